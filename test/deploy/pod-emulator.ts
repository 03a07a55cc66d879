import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../harness/intake-process.ts';
import { type ImageConfig, imageConfig } from './dockerfile.ts';
import type { K8sObject } from './k8s-render.ts';
import { REPO } from './tools.ts';

/**
 * Runs a rendered container as a real local process with exactly what its manifest gives it, so a
 * workload that could never start in a cluster cannot start here either. From the manifest: command
 * and args (else the image's ENTRYPOINT/CMD, read from its Dockerfile), the image's ENV, env (values,
 * ConfigMap and Secret keys, the downward API), envFrom, and the files its Secret, ConfigMap and
 * emptyDir volumes mount. What a node provides and a laptop cannot is emulated, each in one place:
 *
 * - the filesystem: every mountPath is a directory under the pod's own root, and paths under a mount in
 *   env values and arguments (whole, or after `=` or `,` inside one, as in a URL's sslrootcert=) are
 *   rewritten to it;
 * - the network namespace: each containerPort listens on a free local port instead (env values named
 *   *PORT that equal a containerPort are rewritten), and probes use that port;
 * - cluster DNS: `service[.ns[.svc[.cluster.local]]]:port` in env values and arguments is rewritten to
 *   the local endpoint the test registered for that Service;
 * - the image: `node dist/X.js` (the compiled entry points) runs the checkout's `bin/` entry points.
 */

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any;

/** A Secret as the API server holds it (data base64, or stringData). */
const secretValues = (o: K8sObject): Record<string, string> => ({
  ...Object.fromEntries(
    Object.entries<string>(o.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  ),
  ...(o.stringData ?? {}),
});

/** Where ConfigMaps and Secrets come from: the rendered objects, then those made outside the overlay. */
export class ClusterState {
  readonly configMaps = new Map<string, Record<string, string>>();
  readonly secrets = new Map<string, Record<string, string>>();
  /** `service:port` → `host:port` of the process behind it. */
  readonly endpoints = new Map<string, string>();

  constructor(
    readonly namespace: string,
    objects: K8sObject[],
  ) {
    for (const o of objects) {
      if (o.kind === 'ConfigMap') this.configMaps.set(o.metadata.name, { ...(o.data ?? {}) });
      if (o.kind === 'Secret') this.secrets.set(o.metadata.name, secretValues(o));
    }
  }

  /** A Secret created outside the overlay (by a secret manager or an operator). */
  addSecret(name: string, values: Record<string, string>) {
    if (this.secrets.has(name)) throw new Error(`Secret ${name} already exists (the overlay makes it)`);
    this.secrets.set(name, values);
  }

  /**
   * The Service `name` port `port` is served by `host`:`local` (host 127.0.0.1, or `localhost` where
   * a TLS client must check a certificate against a name: the test certificate names localhost).
   */
  addEndpoint(name: string, port: number, local: number, host = '127.0.0.1') {
    this.endpoints.set(`${name}:${port}`, `${host}:${local}`);
  }

  /** Rewrites in-cluster Service addresses to their local endpoints. */
  resolveHosts(value: string): string {
    return value.replace(
      /\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.([a-z0-9-]+)(\.svc(\.cluster\.local)?)?)?:(\d+)\b/g,
      (whole, name: string, _a, _b, ns: string | undefined, _c, _d, port: string) => {
        if (ns !== undefined && ns !== this.namespace) return whole;
        return this.endpoints.get(`${name}:${port}`) ?? whole;
      },
    );
  }

  private lookup(kind: 'ConfigMap' | 'Secret', name: string, key: string | undefined, optional: boolean) {
    const store = kind === 'ConfigMap' ? this.configMaps : this.secrets;
    const values = store.get(name);
    if (!values) {
      if (optional) return undefined;
      throw new Error(`${kind} ${name} does not exist: the pod would not start (CreateContainerConfigError)`);
    }
    if (key === undefined) return values;
    if (!(key in values)) {
      if (optional) return undefined;
      throw new Error(`${kind} ${name} has no key ${key}: the pod would not start`);
    }
    return values[key];
  }

  value(kind: 'ConfigMap' | 'Secret', name: string, key: string, optional = false): string | undefined {
    return this.lookup(kind, name, key, optional) as string | undefined;
  }

  all(kind: 'ConfigMap' | 'Secret', name: string, optional = false): Record<string, string> {
    return (this.lookup(kind, name, undefined, optional) as Record<string, string> | undefined) ?? {};
  }
}

/** What a pod template says about itself, for the downward API. */
export interface PodIdentity {
  name: string;
  labels: Record<string, string>;
}

/** A container of a rendered workload, ready to run as a process. */
export interface PodSpec {
  owner: K8sObject;
  container: Any;
  podSpec: Any;
  identity: PodIdentity;
}

/** Our images, by the name the manifests use, and the Dockerfile that builds each. */
export const DOCKERFILES: Record<string, string> = { intake: 'Dockerfile', 'go-app': 'go-app/Dockerfile' };

/** How a container's argv runs locally; the test adds the ones it builds (go-app). */
export type Runner = (argv: string[]) => string[];

/** The intake image's compiled entry points (dist/) run as the checkout's bin/ entry points: same code. */
export const runIntake: Runner = (argv) => {
  const local: Record<string, string> = {
    'dist/cli.js': 'bin/intake.js',
    'dist/pod-watcher/main.js': 'bin/pod-watcher.js',
  };
  if (argv[0] !== 'node' || !argv[1] || !local[argv[1]])
    throw new Error(`no local equivalent of the intake image's ${JSON.stringify(argv)}`);
  return [process.execPath, join(REPO, local[argv[1]]!), ...argv.slice(2)];
};

/** The image name without registry, tag or digest: `ghcr.io/x/intake:1.2` → `intake`. */
export const imageName = (image: string) =>
  image
    .replace(/@.*$/, '')
    .replace(/:[^/]*$/, '')
    .split('/')
    .at(-1)!;

/** Every container of ours in the rendered objects (Deployments, Jobs, CronJobs), in manifest order. */
export function ourContainers(objects: K8sObject[]): PodSpec[] {
  const out: PodSpec[] = [];
  for (const o of objects) {
    const template =
      o.kind === 'Deployment' || o.kind === 'Job'
        ? o.spec.template
        : o.kind === 'CronJob'
          ? o.spec.jobTemplate.spec.template
          : undefined;
    if (!template) continue;
    for (const c of template.spec.containers) {
      if (!DOCKERFILES[imageName(c.image)]) continue;
      out.push({
        owner: o,
        container: c,
        podSpec: template.spec,
        identity: { name: `${o.metadata.name}-7d9f8c6b5-x2x4q`, labels: template.metadata?.labels ?? {} },
      });
    }
  }
  return out;
}

export interface PreparedProcess {
  argv: string[];
  env: Record<string, string>;
  /** containerPort (number and name) → local port. */
  ports: Map<string | number, number>;
  /** The pod's filesystem root: mountPaths live below it. */
  root: string;
}

/** Builds the process a container would run: argv, environment, mounted files, ports. */
export async function prepare(
  pod: PodSpec,
  cluster: ClusterState,
  root: string,
  runners: Record<string, Runner>,
  extraEnv: Record<string, string> = {},
): Promise<PreparedProcess> {
  const c = pod.container;
  const name = imageName(c.image);
  const dockerfile = DOCKERFILES[name];
  if (!dockerfile) throw new Error(`${c.name}: image ${c.image} is not built by this repository`);
  const cfg: ImageConfig = imageConfig(dockerfile);

  // Volumes → files under the pod's root.
  const mounts: Array<{ path: string; local: string }> = [];
  for (const m of c.volumeMounts ?? []) {
    const v = (pod.podSpec.volumes ?? []).find((x: Any) => x.name === m.name);
    if (!v) throw new Error(`${c.name}: volumeMount ${m.name} has no volume`);
    const local = join(root, m.mountPath);
    mkdirSync(local, { recursive: true });
    let files: Record<string, string> = {};
    if (v.secret) files = cluster.all('Secret', v.secret.secretName, v.secret.optional);
    else if (v.configMap) files = cluster.all('ConfigMap', v.configMap.name, v.configMap.optional);
    else if (!v.emptyDir) throw new Error(`${c.name}: volume ${v.name} is of a kind this emulator lacks`);
    const items: Array<{ key: string; path: string }> | undefined = (v.secret ?? v.configMap)?.items;
    for (const [key, content] of Object.entries(files)) {
      const item = items ? items.find((i) => i.key === key) : { key, path: key };
      if (item) writeFileSync(join(local, item.path), content, { mode: 0o400 });
    }
    mounts.push({ path: m.mountPath, local });
  }
  mounts.sort((a, b) => b.path.length - a.path.length);
  const rewritePath = (s: string) => {
    for (const m of mounts) {
      if (s === m.path || s.startsWith(`${m.path}/`)) return m.local + s.slice(m.path.length);
    }
    return s;
  };
  // A path may also sit inside a value: a URL parameter (`?sslrootcert=/etc/…`) or a list item.
  const rewritePaths = (s: string) => s.replace(/(?<=^|[=,])\/[^&,\s]*/g, rewritePath);

  // containerPorts → free local ports.
  const ports = new Map<string | number, number>();
  for (const p of c.ports ?? []) {
    const local = await freePort();
    ports.set(p.containerPort, local);
    if (p.name) ports.set(p.name, local);
  }

  // Environment, in Kubernetes' order: image ENV, then envFrom, then env (later wins; $(VAR) expanded).
  const env: Record<string, string> = { ...cfg.env };
  for (const f of c.envFrom ?? []) {
    const values = f.configMapRef
      ? cluster.all('ConfigMap', f.configMapRef.name, f.configMapRef.optional)
      : cluster.all('Secret', f.secretRef.name, f.secretRef.optional);
    for (const [k, v] of Object.entries(values)) env[(f.prefix ?? '') + k] = v;
  }
  for (const e of c.env ?? []) {
    let v: string | undefined;
    if (e.value !== undefined) {
      v = String(e.value).replace(/\$\((\w+)\)/g, (whole, n: string) => env[n] ?? whole);
    } else if (e.valueFrom?.configMapKeyRef) {
      const r = e.valueFrom.configMapKeyRef;
      v = cluster.value('ConfigMap', r.name, r.key, r.optional);
    } else if (e.valueFrom?.secretKeyRef) {
      const r = e.valueFrom.secretKeyRef;
      v = cluster.value('Secret', r.name, r.key, r.optional);
    } else if (e.valueFrom?.fieldRef) {
      v = fieldRef(e.valueFrom.fieldRef.fieldPath, pod.identity, cluster.namespace);
    } else {
      throw new Error(`${c.name}: env ${e.name} has a source this emulator lacks`);
    }
    if (v === undefined) delete env[e.name];
    else env[e.name] = v;
  }
  for (const [k, v] of Object.entries(env)) {
    let out = cluster.resolveHosts(rewritePaths(v));
    if (/PORT$/.test(k) && ports.has(Number(out))) out = String(ports.get(Number(out)));
    env[k] = out;
  }

  const argv = [...(c.command ?? cfg.entrypoint), ...(c.args ?? (c.command ? [] : cfg.cmd))].map((a) =>
    cluster.resolveHosts(rewritePaths(String(a))),
  );
  const runner = runners[name];
  if (!runner) throw new Error(`no way to run image ${name} locally`);
  return { argv: runner(argv), env: { ...env, ...extraEnv }, ports, root };
}

function fieldRef(path: string, pod: PodIdentity, namespace: string): string {
  if (path === 'metadata.name') return pod.name;
  if (path === 'metadata.namespace') return namespace;
  const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
  // pod-template-hash is added by the Deployment controller, not the manifest.
  if (label) return label[1] === 'pod-template-hash' ? '7d9f8c6b5' : (pod.labels[label[1]!] ?? '');
  throw new Error(`fieldRef ${path} is not emulated`);
}

/** A started container process with its output kept for failure messages. */
export interface RunningProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts the prepared process with only its own environment (plus PATH and HOME, which a container's
 * image would have), not the test runner's.
 */
export function start(p: PreparedProcess): RunningProcess {
  const child = spawn(p.argv[0]!, p.argv.slice(1), {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p.root, ...p.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let stopping: Promise<void> | undefined;
  return {
    child,
    output: () => out,
    exited,
    stop(graceMs = 30_000) {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
        process.kill(child.pid, 'SIGTERM');
        const timer = setTimeout(() => child.pid && child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
