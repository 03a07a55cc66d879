import type { K8sObject } from './k8s-render.ts';
import { ref } from './k8s-render.ts';

/**
 * Policies in the spirit of kube-score and Polaris, run over rendered overlays. Each returns one
 * message per violation (empty: the policy holds), so a test can show exactly what broke.
 */
export type Policy = (objects: K8sObject[]) => string[];

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any;

interface PodOwner {
  owner: K8sObject;
  /** The pod template's metadata and spec. */
  labels: Record<string, string>;
  spec: Any;
}

const POD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'ReplicaSet']);
const LONG_RUNNING = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);

/** Every object that owns a pod template (CronJobs nest one level deeper). */
export function podOwners(objects: K8sObject[]): PodOwner[] {
  const out: PodOwner[] = [];
  for (const o of objects) {
    const template = POD_KINDS.has(o.kind)
      ? o.spec?.template
      : o.kind === 'CronJob'
        ? o.spec?.jobTemplate?.spec?.template
        : undefined;
    if (template) out.push({ owner: o, labels: template.metadata?.labels ?? {}, spec: template.spec ?? {} });
  }
  return out;
}

const containersOf = (spec: Any): Array<{ c: Any; where: string }> => [
  ...(spec.initContainers ?? []).map((c: Any) => ({ c, where: `initContainer ${c.name}` })),
  ...(spec.containers ?? []).map((c: Any) => ({ c, where: `container ${c.name}` })),
];

/** Kubernetes label-selector semantics (matchLabels AND matchExpressions). */
export function selectorMatches(selector: Any, labels: Record<string, string>): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const ok =
      e.operator === 'In'
        ? has && e.values.includes(value)
        : e.operator === 'NotIn'
          ? !has || !e.values.includes(value)
          : e.operator === 'Exists'
            ? has
            : e.operator === 'DoesNotExist'
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

const isEmptySelector = (s: Any) =>
  !s || (Object.keys(s.matchLabels ?? {}).length === 0 && (s.matchExpressions ?? []).length === 0);

/** Long-running pods have liveness and readiness probes on every (non-init) container. */
export const probesPresent: Policy = (objects) =>
  podOwners(objects)
    .filter((p) => LONG_RUNNING.has(p.owner.kind))
    .flatMap((p) =>
      (p.spec.containers ?? []).flatMap((c: Any) => [
        ...(c.livenessProbe ? [] : [`${ref(p.owner)} container ${c.name}: no livenessProbe`]),
        ...(c.readinessProbe ? [] : [`${ref(p.owner)} container ${c.name}: no readinessProbe`]),
      ]),
    );

/** Every container requests and limits both CPU and memory. */
export const resourcesSet: Policy = (objects) =>
  podOwners(objects).flatMap((p) =>
    containersOf(p.spec).flatMap(({ c, where }) =>
      ['requests', 'limits'].flatMap((kind) =>
        ['cpu', 'memory']
          .filter((r) => c.resources?.[kind]?.[r] === undefined)
          .map((r) => `${ref(p.owner)} ${where}: no ${kind}.${r}`),
      ),
    ),
  );

/** The "restricted" Pod Security Standard, plus a read-only root filesystem. */
export const restrictedSecurity: Policy = (objects) =>
  podOwners(objects).flatMap((p) => {
    const pod = p.spec.securityContext ?? {};
    return containersOf(p.spec).flatMap(({ c, where }) => {
      const sc = c.securityContext ?? {};
      const at = `${ref(p.owner)} ${where}`;
      const out: string[] = [];
      if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) out.push(`${at}: runAsNonRoot is not true`);
      if ((sc.runAsUser ?? pod.runAsUser) === 0) out.push(`${at}: runs as uid 0`);
      if (sc.readOnlyRootFilesystem !== true) out.push(`${at}: readOnlyRootFilesystem is not true`);
      if (sc.allowPrivilegeEscalation !== false) out.push(`${at}: allowPrivilegeEscalation is not false`);
      if (sc.privileged === true) out.push(`${at}: privileged`);
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${at}: capabilities do not drop ALL`);
      if ((sc.capabilities?.add ?? []).length) out.push(`${at}: adds capabilities`);
      const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
      if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
        out.push(`${at}: no RuntimeDefault seccompProfile`);
      return out;
    });
  });

/** A PodDisruptionBudget with maxUnavailable 1 selects every long-running workload. */
export const pdbPerWorkload: Policy = (objects) => {
  const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget');
  return podOwners(objects)
    .filter((p) => LONG_RUNNING.has(p.owner.kind))
    .flatMap((p) => {
      const mine = pdbs.filter((b) => selectorMatches(b.spec?.selector, p.labels));
      if (mine.length === 0) return [`${ref(p.owner)}: no PodDisruptionBudget selects its pods`];
      return mine
        .filter((b) => b.spec?.maxUnavailable !== 1)
        .map((b) => `${ref(p.owner)}: ${ref(b)} has maxUnavailable ${b.spec?.maxUnavailable}, want 1`);
    });
};

/** Rolling updates never take a serving pod away before its replacement is Ready. */
export const rollingZeroUnavailable: Policy = (objects) =>
  objects
    .filter((o) => o.kind === 'Deployment')
    .flatMap((d) => {
      const s = d.spec?.strategy;
      if (s?.type !== 'RollingUpdate')
        return [`${ref(d)}: strategy is ${s?.type ?? 'default'}, want RollingUpdate`];
      const mu = s.rollingUpdate?.maxUnavailable;
      return mu === 0 || mu === '0%' ? [] : [`${ref(d)}: maxUnavailable is ${mu ?? 'default 25%'}, want 0`];
    });

/** Seconds a preStop hook delays SIGTERM: the sleep action, or an exec of `sleep N`. */
export function preStopSeconds(c: Any): number {
  const h = c.lifecycle?.preStop;
  if (!h) return 0;
  if (h.sleep) return Number(h.sleep.seconds);
  const cmd: string[] = h.exec?.command ?? [];
  const m = cmd.join(' ').match(/(?:^|\s|;|&)sleep\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}

/** Seconds the app may spend draining after SIGTERM, from its *SHUTDOWN_DELAY_MS/*SHUTDOWN_TIMEOUT_MS. */
export function drainSeconds(c: Any): number {
  let ms = 0;
  for (const e of c.env ?? []) {
    if (/SHUTDOWN_(DELAY|TIMEOUT)_MS$/.test(e.name) && e.value !== undefined) ms += Number(e.value);
  }
  return ms / 1000;
}

/**
 * preStop delay + drain time fits in terminationGracePeriodSeconds (default 30), so the kubelet never
 * SIGKILLs a pod that is still finishing requests. Pods behind an Ingress also need a preStop delay
 * of at least 5 s, or they stop accepting before the load balancer has stopped sending.
 */
export function graceArithmetic(objects: K8sObject[]): string[] {
  const ingressServices = new Set(
    objects
      .filter((o) => o.kind === 'Ingress')
      .flatMap((i) => (i.spec?.rules ?? []).flatMap((r: Any) => r.http?.paths ?? []))
      .map((p: Any) => p.backend?.service?.name),
  );
  const behindIngress = (p: PodOwner) =>
    objects.some(
      (s) =>
        s.kind === 'Service' &&
        ingressServices.has(s.metadata.name) &&
        !isEmptySelector({ matchLabels: s.spec?.selector }) &&
        selectorMatches({ matchLabels: s.spec?.selector }, p.labels),
    );
  return podOwners(objects)
    .filter((p) => LONG_RUNNING.has(p.owner.kind))
    .flatMap((p) => {
      const grace = p.spec.terminationGracePeriodSeconds ?? 30;
      return (p.spec.containers ?? []).flatMap((c: Any) => {
        const pre = preStopSeconds(c);
        const drain = drainSeconds(c);
        const out: string[] = [];
        if (pre + drain >= grace) {
          out.push(
            `${ref(p.owner)} container ${c.name}: preStop ${pre}s + drain ${drain}s >= terminationGracePeriodSeconds ${grace}`,
          );
        }
        if (behindIngress(p) && pre < 5) {
          out.push(
            `${ref(p.owner)} container ${c.name}: serves an Ingress but preStop delays SIGTERM only ${pre}s`,
          );
        }
        return out;
      });
    });
}

/** Images carry an explicit tag other than `latest`, or a digest. */
export function imagePinned(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const lastSegment = image.slice(image.lastIndexOf('/') + 1);
  const colon = lastSegment.indexOf(':');
  if (colon < 0) return false;
  const tag = lastSegment.slice(colon + 1);
  return tag !== '' && tag !== 'latest';
}

export const imagesPinned: Policy = (objects) => [
  ...podOwners(objects).flatMap((p) =>
    containersOf(p.spec)
      .filter(({ c }) => !imagePinned(String(c.image ?? '')))
      .map(({ c, where }) => `${ref(p.owner)} ${where}: image "${c.image}" is not pinned to a tag or digest`),
  ),
  ...objects
    .filter((o) => o.kind === 'Cluster' && o.spec?.imageName && !imagePinned(o.spec.imageName))
    .map((o) => `${ref(o)}: imageName "${o.spec.imageName}" is not pinned`),
];

/** Pod labels of the CloudNativePG instances of a Cluster (set by the operator). */
const cnpgPodLabels = (o: K8sObject) => ({ 'cnpg.io/cluster': o.metadata.name });

/** Every workload's pods are selected by at least one NetworkPolicy of their own (not only default-deny). */
export const networkPolicyPerWorkload: Policy = (objects) => {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy' && !isEmptySelector(o.spec?.podSelector));
  const hasDefaultDeny = objects.some(
    (o) =>
      o.kind === 'NetworkPolicy' &&
      isEmptySelector(o.spec?.podSelector) &&
      ['Ingress', 'Egress'].every((t) => (o.spec?.policyTypes ?? []).includes(t)) &&
      !o.spec?.ingress &&
      !o.spec?.egress,
  );
  const workloads = [
    ...podOwners(objects).map((p) => ({ name: ref(p.owner), labels: p.labels })),
    ...objects.filter((o) => o.kind === 'Cluster').map((o) => ({ name: ref(o), labels: cnpgPodLabels(o) })),
  ];
  return [
    ...(hasDefaultDeny
      ? []
      : ['no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)']),
    ...workloads
      .filter((w) => !policies.some((np) => selectorMatches(np.spec.podSelector, w.labels)))
      .map((w) => `${w.name}: no NetworkPolicy selects its pods`),
  ];
};

/** Replicated workloads spread over both nodes and zones. */
export const topologySpread: Policy = (objects) => {
  const keys = ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'];
  const missing = (name: string, constraints: Any[] | undefined, extra: string[] = []) =>
    keys
      .filter((k) => !(constraints ?? []).some((c: Any) => c.topologyKey === k) && !extra.includes(k))
      .map((k) => `${name}: no topologySpreadConstraint on ${k}`);
  return [
    ...podOwners(objects)
      .filter((p) => p.owner.kind === 'Deployment' || p.owner.kind === 'StatefulSet')
      .flatMap((p) => missing(ref(p.owner), p.spec.topologySpreadConstraints)),
    // CloudNativePG spreads instances over nodes with its own required pod anti-affinity.
    ...objects
      .filter((o) => o.kind === 'Cluster')
      .flatMap((o) =>
        missing(
          ref(o),
          o.spec?.topologySpreadConstraints,
          o.spec?.affinity?.enablePodAntiAffinity !== false && o.spec?.affinity?.topologyKey
            ? [o.spec.affinity.topologyKey]
            : [],
        ),
      ),
  ];
};

/**
 * Pods get no Kubernetes API token unless their ServiceAccount is bound to a Role or ClusterRole,
 * i.e. unless they are meant to call the API.
 */
export const tokenOnlyWhenNeeded: Policy = (objects) => {
  const bound = new Set(
    objects
      .filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')
      .flatMap((b) =>
        (b.subjects ?? []).filter((s: Any) => s.kind === 'ServiceAccount').map((s: Any) => s.name),
      ),
  );
  return podOwners(objects)
    .filter((p) => !bound.has(p.spec.serviceAccountName ?? 'default'))
    .filter((p) => p.spec.automountServiceAccountToken !== false)
    .map((p) => `${ref(p.owner)}: mounts a service account token but has no API permissions`);
};

/**
 * Every NetworkPolicy rule names its peers: an ingress rule without `from` admits every source, an
 * egress rule without `to` reaches every address (the ports alone do not narrow it to anyone).
 */
export const networkPolicyPeers: Policy = (objects) =>
  objects
    .filter((o) => o.kind === 'NetworkPolicy')
    .flatMap((np) => [
      ...(np.spec?.ingress ?? [])
        .map((r: Any, i: number) => [r, i] as const)
        .filter(([r]: readonly [Any, number]) => !(r.from ?? []).length)
        .map(
          ([, i]: readonly [Any, number]) => `${ref(np)}: ingress rule ${i} admits every source (no from)`,
        ),
      ...(np.spec?.egress ?? [])
        .map((r: Any, i: number) => [r, i] as const)
        .filter(([r]: readonly [Any, number]) => !(r.to ?? []).length)
        .map(([, i]: readonly [Any, number]) => `${ref(np)}: egress rule ${i} reaches every address (no to)`),
    ]);

export const POLICIES: Record<string, Policy> = {
  probesPresent,
  resourcesSet,
  restrictedSecurity,
  pdbPerWorkload,
  rollingZeroUnavailable,
  graceArithmetic,
  imagesPinned,
  networkPolicyPerWorkload,
  networkPolicyPeers,
  topologySpread,
  tokenOnlyWhenNeeded,
};
