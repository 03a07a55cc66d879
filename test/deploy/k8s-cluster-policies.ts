import { commandNamed } from '../../src/commands/registry.ts';
import { loadConfig } from '../../src/config.ts';
import { type Policy, podOwners, selectorMatches } from './k8s-policies.ts';
import { type K8sObject, ref } from './k8s-render.ts';

/**
 * Policies about what a real cluster needs beyond each workload's own shape (k8s-policies.ts): names
 * that do not collide between environments, a database connection budget, backups, and alerts on every
 * scrape job. Same contract: one message per violation.
 */

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any;

/** Kinds that are not namespaced, among those the overlays render. */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

const namespaceOf = (objects: K8sObject[]) => objects.find((o) => o.kind === 'Namespace')?.metadata.name;

/**
 * Cluster-scoped objects are shared by every environment in a cluster, so each is named after its
 * overlay's namespace (`<namespace>-…`), and each ClusterRoleBinding refers to a ClusterRole rendered
 * with it (a rename that missed the roleRef would bind nothing, or another environment's role).
 */
export const clusterScopedNames: Policy = (objects) => {
  const ns = namespaceOf(objects);
  const roles = new Set(objects.filter((o) => o.kind === 'ClusterRole').map((o) => o.metadata.name));
  return objects
    .filter((o) => CLUSTER_SCOPED.has(o.kind) && o.kind !== 'Namespace')
    .flatMap((o) => [
      ...(o.metadata.name.startsWith(`${ns}-`)
        ? []
        : [`${ref(o)}: a cluster-scoped name must start with the namespace ("${ns}-")`]),
      ...(o.kind === 'ClusterRoleBinding' && o.roleRef?.kind === 'ClusterRole' && !roles.has(o.roleRef.name)
        ? [`${ref(o)}: roleRef names ClusterRole ${o.roleRef.name}, which is not rendered`]
        : []),
    ]);
};

/** maxSurge of a Deployment as a pod count for `replicas` (percentages round up, as Kubernetes does). */
function surgePods(d: K8sObject, replicas: number): number {
  const s = d.spec?.strategy?.rollingUpdate?.maxSurge ?? '25%';
  return typeof s === 'string' && s.endsWith('%')
    ? Math.ceil((replicas * Number.parseFloat(s)) / 100)
    : Number(s);
}

/**
 * The most connections each database role can see: for every Deployment that logs in as the role, its
 * largest pod count (the HPA's maxReplicas, else spec.replicas) plus maxSurge during a rollout, times
 * its pool (INTAKE_DB_POOL_SIZE, else intake's default). It must stay under the role's connectionLimit
 * in the CloudNativePG Cluster, and all roles together under max_connections; otherwise a scale-up in
 * the middle of a rollout fails with "too many connections" exactly when load is highest.
 */
export const connectionBudget: Policy = (objects) => {
  const defaultPool = loadConfig({}, commandNamed('api')).dbPoolSize;
  const clusters = objects.filter((o) => o.kind === 'Cluster');
  const limits = new Map<string, number>();
  for (const c of clusters)
    for (const r of c.spec?.managed?.roles ?? []) limits.set(r.name, r.connectionLimit ?? -1);
  const use = new Map<string, { total: number; parts: string[] }>();
  const out: string[] = [];
  for (const p of podOwners(objects).filter((x) => x.owner.kind === 'Deployment')) {
    const d = p.owner;
    for (const c of p.spec.containers ?? []) {
      const url = c.env?.find((e: Any) => e.name === 'DATABASE_URL')?.value;
      if (!url) continue;
      const role = decodeURIComponent(new URL(url).username);
      const limit = limits.get(role);
      if (limit === undefined || limit < 0) {
        out.push(`${ref(d)}: logs in as ${role}, which is not a managed role with a connectionLimit`);
        continue;
      }
      const pool = Number(c.env?.find((e: Any) => e.name === 'INTAKE_DB_POOL_SIZE')?.value ?? defaultPool);
      const hpa = objects.find(
        (o) =>
          o.kind === 'HorizontalPodAutoscaler' &&
          o.spec?.scaleTargetRef?.kind === 'Deployment' &&
          o.spec?.scaleTargetRef?.name === d.metadata.name,
      );
      const replicas = hpa ? Number(hpa.spec.maxReplicas) : Number(d.spec?.replicas ?? 1);
      const pods = replicas + surgePods(d, replicas);
      const u = use.get(role) ?? { total: 0, parts: [] };
      u.total += pods * pool;
      u.parts.push(`${d.metadata.name} ${pods} pods × pool ${pool}`);
      use.set(role, u);
    }
  }
  for (const [role, u] of use) {
    const limit = limits.get(role)!;
    if (u.total >= limit)
      out.push(
        `role ${role}: ${u.parts.join(' + ')} = ${u.total} connections, not under its connectionLimit ${limit}`,
      );
  }
  const all = [...use.values()].reduce((a, u) => a + u.total, 0);
  for (const c of clusters) {
    const max = Number(c.spec?.postgresql?.parameters?.max_connections ?? 100);
    if (all >= max)
      out.push(`${ref(c)}: the roles together may open ${all} connections, max_connections is ${max}`);
  }
  return out;
};

/**
 * Every CloudNativePG Cluster archives WAL and keeps base backups in object storage (with a retention
 * policy and credentials from a Secret) and has a ScheduledBackup.
 */
export const databaseBackups: Policy = (objects) =>
  objects
    .filter((o) => o.kind === 'Cluster')
    .flatMap((c) => {
      const store = c.spec?.backup?.barmanObjectStore;
      const out: string[] = [];
      if (!/^(s3|gs|https?):\/\/./.test(String(store?.destinationPath ?? '')))
        out.push(`${ref(c)}: no object store for WAL archiving and base backups (backup.barmanObjectStore)`);
      if (store && !store.s3Credentials && !store.azureCredentials && !store.googleCredentials)
        out.push(`${ref(c)}: the object store has no credentials`);
      if (!c.spec?.backup?.retentionPolicy) out.push(`${ref(c)}: backups have no retentionPolicy`);
      if (
        !objects.some(
          (o) =>
            o.kind === 'ScheduledBackup' && o.spec?.cluster?.name === c.metadata.name && !o.spec?.suspend,
        )
      )
        out.push(`${ref(c)}: no ScheduledBackup takes base backups of it`);
      return out;
    });

/** The PodMonitors that scrape a CloudNativePG Cluster's instances: its pods, on the exporter's port. */
const podMonitorsOf = (objects: K8sObject[], cluster: K8sObject) =>
  objects.filter(
    (m) =>
      m.kind === 'PodMonitor' &&
      !m.spec?.namespaceSelector &&
      selectorMatches(m.spec?.selector, {
        // The labels CloudNativePG puts on every instance pod of the cluster.
        'cnpg.io/cluster': cluster.metadata.name,
        'cnpg.io/podRole': 'instance',
      }) &&
      (m.spec?.podMetricsEndpoints ?? []).some((e: Any) => e.port === 'metrics'),
  );

/**
 * Every CloudNativePG Cluster is scraped through a PodMonitor of our own that selects its instance pods
 * on the port `metrics` (CloudNativePG's docs). `monitoring.enablePodMonitor` is deprecated ("will be
 * removed in an upcoming release"): left on, the operator would also make a PodMonitor of the same name
 * and fight ours.
 */
export const databaseScraped: Policy = (objects) =>
  objects
    .filter((o) => o.kind === 'Cluster')
    .flatMap((c) => [
      ...(podMonitorsOf(objects, c).length === 1
        ? []
        : [
            `${ref(c)}: ${podMonitorsOf(objects, c).length} PodMonitors scrape its instances on port metrics, not 1`,
          ]),
      ...(c.spec?.monitoring?.enablePodMonitor === true
        ? [`${ref(c)}: monitoring.enablePodMonitor is deprecated; ship a PodMonitor instead`]
        : []),
    ]);

/** The Prometheus job of every scrape target the manifests create. */
export function scrapeJobs(objects: K8sObject[]): string[] {
  const ns = namespaceOf(objects);
  const services = objects.filter((o) => o.kind === 'Service');
  return [
    // A ServiceMonitor's job is the name of each Service it selects that has the endpoint's port.
    ...objects
      .filter((o) => o.kind === 'ServiceMonitor')
      .flatMap((m) =>
        services
          .filter((s) => selectorMatches(m.spec?.selector, s.metadata.labels ?? {}))
          .filter((s) =>
            (m.spec?.endpoints ?? []).some((e: Any) =>
              (s.spec?.ports ?? []).some((p: Any) => p.name === e.port),
            ),
          )
          .map((s) => s.metadata.name),
      ),
    // A PodMonitor's job is <namespace>/<its name>; the pods it selects are made by an operator.
    ...objects.filter((o) => o.kind === 'PodMonitor').map((m) => `${ns}/${m.metadata.name}`),
  ];
}

/**
 * `up{job="x"}` / `up{job=~"re"}` selectors in an expression: whether each asks for the job's absence,
 * with absent() or, per namespace, as what a workload lacks (`… unless on (namespace) group by
 * (namespace) (up{…})`).
 */
function upSelectors(expr: string): Array<{ absent: boolean; matches: (job: string) => boolean }> {
  const absence = /(absent\(\s*|unless on \(namespace\)\s*group by \(namespace\) \(\s*)?/;
  const up = new RegExp(`${absence.source}up\\{[^}]*job(=~|=)"([^"]+)"[^}]*\\}`, 'g');
  return [...expr.matchAll(up)].map((m) => ({
    absent: Boolean(m[1]),
    matches:
      m[2] === '=' ? (job: string) => job === m[3] : (job: string) => new RegExp(`^(?:${m[3]})$`).test(job),
  }));
}

/**
 * Every scrape job has an alert on `up == 0` (a target failing) and one on its absence (no target at
 * all), in the rendered PrometheusRule: a job that silently disappears takes its alerts with it.
 */
export const scrapedJobsAlerted: Policy = (objects) => {
  const alerts = objects
    .filter((o) => o.kind === 'PrometheusRule')
    .flatMap((r) => (r.spec?.groups ?? []).flatMap((g: Any) => g.rules ?? []))
    .filter((r: Any) => r.alert);
  const selectors = alerts.flatMap((a: Any) => upSelectors(String(a.expr)));
  return scrapeJobs(objects).flatMap((job) => [
    ...(selectors.some((s) => !s.absent && s.matches(job)) ? [] : [`job ${job}: no alert on up == 0`]),
    ...(selectors.some((s) => s.absent && s.matches(job)) ? [] : [`job ${job}: no absent(up) alert`]),
  ]);
};

/** A container's environment from its env values and envFrom ConfigMaps (Secrets are not resolved). */
export function plainEnv(objects: K8sObject[], c: Any): Record<string, string> {
  const env: Record<string, string> = {};
  for (const f of c.envFrom ?? []) {
    const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === f.configMapRef?.name);
    Object.assign(env, cm?.data ?? {});
  }
  for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = String(e.value);
  return env;
}

/** The Secret (and key) a file path inside a container comes from, if it is a mounted Secret item. */
function secretFileSource(pod: Any, c: Any, path: string): { secret: string; key: string } | undefined {
  for (const m of c.volumeMounts ?? []) {
    if (!path.startsWith(`${m.mountPath}/`)) continue;
    const v = (pod.volumes ?? []).find((x: Any) => x.name === m.name);
    if (!v?.secret) return undefined;
    const file = path.slice(m.mountPath.length + 1);
    const item = (v.secret.items ?? []).find((i: Any) => i.path === file);
    return { secret: v.secret.secretName, key: item?.key ?? file };
  }
  return undefined;
}

/**
 * Every container that talks to PostgreSQL does so over TLS and checks whom it talks to:
 * `sslmode=verify-full` with `sslrootcert` a mounted `ca.crt` of CloudNativePG's `<cluster>-ca` Secret.
 */
export const databaseTls: Policy = (objects) => {
  const cas = new Set(objects.filter((o) => o.kind === 'Cluster').map((o) => `${o.metadata.name}-ca`));
  return podOwners(objects).flatMap((p) =>
    (p.spec.containers ?? []).flatMap((c: Any) => {
      const url = plainEnv(objects, c).DATABASE_URL;
      if (!url) return [];
      const at = `${ref(p.owner)} container ${c.name}`;
      const params = new URL(url).searchParams;
      if (params.get('sslmode') !== 'verify-full')
        return [`${at}: DATABASE_URL has sslmode=${params.get('sslmode')}, want verify-full`];
      const root = params.get('sslrootcert');
      const src = root ? secretFileSource(p.spec, c, root) : undefined;
      return src && cas.has(src.secret) && src.key === 'ca.crt'
        ? []
        : [`${at}: sslrootcert ${root} is not the mounted ca.crt of the database's CA Secret`];
    }),
  );
};

/**
 * Every container that talks to NATS does so over TLS with the server checked against the NATS CA
 * (`NATS_TLS_CA_FILE`, the mounted ca.crt of a cert-manager Certificate's Secret), as its own user
 * (`NATS_USER`, password from a mounted Secret) and with that user's inbox prefix.
 */
export const natsClients: Policy = (objects) => {
  const certSecrets = new Set(
    objects.filter((o) => o.kind === 'Certificate').map((o) => String(o.spec?.secretName)),
  );
  return podOwners(objects).flatMap((p) =>
    (p.spec.containers ?? []).flatMap((c: Any) => {
      const env = plainEnv(objects, c);
      if (!env.NATS_URL) return [];
      const at = `${ref(p.owner)} container ${c.name}`;
      const out: string[] = [];
      if (!env.NATS_URL.split(',').every((u) => u.trim().startsWith('tls://')))
        out.push(`${at}: NATS_URL ${env.NATS_URL} is not tls://`);
      const ca = env.NATS_TLS_CA_FILE ? secretFileSource(p.spec, c, env.NATS_TLS_CA_FILE) : undefined;
      if (!ca || !certSecrets.has(ca.secret) || ca.key !== 'ca.crt')
        out.push(`${at}: NATS_TLS_CA_FILE is not the mounted ca.crt of the NATS certificate's Secret`);
      if (!env.NATS_USER) out.push(`${at}: no NATS_USER`);
      const pass = env.NATS_PASSWORD_FILE ? secretFileSource(p.spec, c, env.NATS_PASSWORD_FILE) : undefined;
      if (!pass?.secret.startsWith('intake-nats-'))
        out.push(`${at}: NATS_PASSWORD_FILE is not mounted from an intake-nats-<role> Secret`);
      if (env.NATS_INBOX_PREFIX !== `_INBOX.${env.NATS_USER}`)
        out.push(`${at}: NATS_INBOX_PREFIX is ${env.NATS_INBOX_PREFIX}, want _INBOX.${env.NATS_USER}`);
      return out;
    }),
  );
};

/**
 * No Ingress reaches the privacy and admin routes: every intake API container behind an Ingress sets
 * INTAKE_ADMIN_PORT, and no Ingress backend's Service port targets that port.
 */
export const adminRoutesInternal: Policy = (objects) => {
  const out: string[] = [];
  const backends = objects
    .filter((o) => o.kind === 'Ingress')
    .flatMap((i) => (i.spec?.rules ?? []).flatMap((r: Any) => r.http?.paths ?? []))
    .map((p: Any) => p.backend?.service);
  for (const b of backends) {
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === b?.name);
    const port = (svc?.spec?.ports ?? []).find(
      (p: Any) => p.name === b?.port?.name || p.port === b?.port?.number,
    );
    if (!svc || !port) continue;
    for (const p of podOwners(objects).filter((x) =>
      selectorMatches({ matchLabels: svc.spec.selector }, x.labels),
    )) {
      for (const c of p.spec.containers ?? []) {
        if (!['api', 'start'].includes(c.args?.[0])) continue;
        const admin = plainEnv(objects, c).INTAKE_ADMIN_PORT;
        const target = (c.ports ?? []).find(
          (cp: Any) => cp.name === port.targetPort || cp.containerPort === port.targetPort,
        )?.containerPort;
        if (!admin)
          out.push(`${ref(p.owner)}: behind Ingress via ${ref(svc)} but INTAKE_ADMIN_PORT is not set`);
        else if (Number(admin) === Number(target))
          out.push(`${ref(p.owner)}: Ingress via ${ref(svc)} reaches the admin port ${admin}`);
      }
    }
  }
  return out;
};

export const CLUSTER_POLICIES: Record<string, Policy> = {
  clusterScopedNames,
  connectionBudget,
  databaseBackups,
  databaseScraped,
  scrapedJobsAlerted,
  databaseTls,
  natsClients,
  adminRoutesInternal,
};

/**
 * The Secrets an overlay needs from outside: every Secret its objects refer to (pods' env, envFrom and
 * volumes; the CloudNativePG Cluster's role passwords, backup credentials, superuser), minus those it
 * generates and those an operator makes from the manifests (CloudNativePG's `<cluster>-app` and
 * `<cluster>-ca`, cert-manager's Ingress TLS Secrets and its Certificates' Secrets).
 */
export function expectedSecrets(objects: K8sObject[]): string[] {
  const refs = new Set<string>();
  for (const p of podOwners(objects)) {
    for (const c of [...(p.spec.initContainers ?? []), ...(p.spec.containers ?? [])]) {
      for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) refs.add(e.valueFrom.secretKeyRef.name);
      for (const f of c.envFrom ?? []) if (f.secretRef) refs.add(f.secretRef.name);
    }
    for (const v of p.spec.volumes ?? []) {
      if (v.secret) refs.add(v.secret.secretName);
      for (const s of v.projected?.sources ?? []) if (s.secret) refs.add(s.secret.name);
    }
  }
  const made = new Set(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name));
  for (const c of objects.filter((o) => o.kind === 'Cluster')) {
    made.add(`${c.metadata.name}-app`);
    made.add(`${c.metadata.name}-ca`);
    for (const r of c.spec?.managed?.roles ?? []) if (r.passwordSecret) refs.add(r.passwordSecret.name);
    const s3 = c.spec?.backup?.barmanObjectStore?.s3Credentials ?? {};
    for (const k of Object.values<Any>(s3)) if (k?.name) refs.add(k.name);
    if (c.spec?.superuserSecret) refs.add(c.spec.superuserSecret.name);
  }
  for (const i of objects.filter((o) => o.kind === 'Ingress'))
    for (const t of i.spec?.tls ?? []) made.add(t.secretName);
  for (const c of objects.filter((o) => o.kind === 'Certificate')) made.add(c.spec?.secretName);
  return [...refs].filter((n) => !made.has(n)).sort();
}
