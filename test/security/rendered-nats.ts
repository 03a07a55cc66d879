import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import type { K8sObject } from '../deploy/k8s-render.ts';

/**
 * The NATS cluster exactly as an overlay renders it, run on this machine: the StatefulSet's container
 * arguments and environment, the ConfigMap's files, the Secrets' files, with only what Kubernetes itself
 * would provide substituted: the pod name (downward API), Secret values (the test makes them), `$(VAR)`
 * expansion, volume mount paths (a directory per pod) and DNS (the routes' host names become 127.0.0.1
 * and the clients' `nats` becomes localhost, so the test certificate also names those two). Ports are
 * free loopback ports given as flags, which nats-server applies over the file.
 */

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any;

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

/** Secret name → key → value, as the test's stand-in for the cluster's Secrets. */
export type Secrets = Record<string, Record<string, string>>;

export function find(objects: K8sObject[], kind: string, name: string): Any {
  const o = objects.find(
    (x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)),
  );
  if (!o) throw new Error(`${kind}/${name} is not rendered`);
  return o;
}

/**
 * A container's environment as the kubelet builds it: envFrom ConfigMaps first, then env in order,
 * `$(NAME)` expanded from what is already defined (`$$` escapes), Secret and downward-API references
 * resolved.
 */
export function containerEnv(
  objects: K8sObject[],
  container: Any,
  secrets: Secrets,
  fields: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const f of container.envFrom ?? []) {
    if (f.configMapRef) Object.assign(env, find(objects, 'ConfigMap', f.configMapRef.name).data);
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) {
      env[e.name] = String(e.value).replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name) =>
        m === '$$' ? '$' : (env[name] ?? m),
      );
    } else if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef;
      const value = secrets[name.replace(/-[a-z0-9]{10}$/, '')]?.[key] ?? secrets[name]?.[key];
      if (value === undefined) throw new Error(`no test value for Secret ${name} key ${key}`);
      env[e.name] = value;
    } else if (e.valueFrom?.fieldRef) {
      const value = fields[e.valueFrom.fieldRef.fieldPath];
      if (value === undefined) throw new Error(`no test value for field ${e.valueFrom.fieldRef.fieldPath}`);
      env[e.name] = value;
    }
  }
  return env;
}

/**
 * Writes a pod's volumes under `root` (ConfigMap and Secret files, empty directories) for `container`'s
 * mounts; returns a function mapping an absolute path inside the container to the path on this machine.
 */
export function materializeVolumes(
  objects: K8sObject[],
  pod: Any,
  container: Any,
  secrets: Secrets,
  root: string,
): (path: string) => string {
  const mounts: Array<{ mountPath: string; host: string }> = [];
  for (const m of container.volumeMounts ?? []) {
    const host = join(root, m.mountPath);
    mkdirSync(host, { recursive: true });
    mounts.push({ mountPath: m.mountPath, host });
    const v = (pod.volumes ?? []).find((x: Any) => x.name === m.name);
    let files: Record<string, string> = {};
    if (v?.configMap) files = find(objects, 'ConfigMap', v.configMap.name).data;
    else if (v?.secret) {
      const data = secrets[v.secret.secretName.replace(/-[a-z0-9]{10}$/, '')] ?? secrets[v.secret.secretName];
      if (!data) throw new Error(`no test value for Secret ${v.secret.secretName}`);
      files = v.secret.items
        ? Object.fromEntries(v.secret.items.map((i: Any) => [i.path, data[i.key]!]))
        : data;
    }
    for (const [name, text] of Object.entries(files)) writeFileSync(join(host, name), text);
  }
  // Longest mount first, so /etc/nats/tls wins over a mount at /etc.
  mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);
  return (path: string) => {
    const m = mounts.find((x) => path === x.mountPath || path.startsWith(`${x.mountPath}/`));
    return m ? m.host + path.slice(m.mountPath.length) : path;
  };
}

/** Rewrites every absolute path in a configuration text that lies under a mount. */
export function rewritePaths(text: string, hostPath: (p: string) => string): string {
  return text.replace(/(?<=[\s:"'=])\/[\w./-]+/g, (p) => hostPath(p));
}

export interface RenderedNatsNode {
  name: string;
  clientPort: number;
  monitorPort: number;
  clusterPort: number;
  child: ChildProcess | undefined;
  stderr: string;
}

export interface RenderedNatsCluster {
  nodes: RenderedNatsNode[];
  /** Client URLs (tls://localhost:port,...). */
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts the rendered StatefulSet `nats` (all its replicas) under `root`, the Secrets from `secrets`.
 */
export async function startRenderedNats(
  objects: K8sObject[],
  secrets: Secrets,
  root: string,
): Promise<RenderedNatsCluster> {
  const sts = find(objects, 'StatefulSet', 'nats');
  const pod = sts.spec.template.spec;
  const container = pod.containers.find((c: Any) => c.name === 'nats');
  const replicas = Number(sts.spec.replicas);
  const taken = new Set<number>();
  const pick = async () => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  const nodes: RenderedNatsNode[] = [];
  for (let i = 0; i < replicas; i++)
    nodes.push({
      name: `${sts.metadata.name}-${i}`,
      clientPort: await pick(),
      monitorPort: await pick(),
      clusterPort: await pick(),
      child: undefined,
      stderr: '',
    });
  const stop = async () => {
    await Promise.all(
      nodes.map(async (n) => {
        const c = n.child;
        if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        process.kill(c.pid, 'SIGKILL');
        await exited;
      }),
    );
  };
  try {
    for (const n of nodes) {
      const podRoot = join(root, n.name);
      const hostPath = materializeVolumes(objects, pod, container, secrets, podRoot);
      // Every file of every mount is rewritten, so includes and TLS paths land in this pod's directory.
      for (const m of container.volumeMounts ?? []) {
        const v = (pod.volumes ?? []).find((x: Any) => x.name === m.name);
        if (!v?.configMap) continue;
        for (const [file, text] of Object.entries<string>(find(objects, 'ConfigMap', v.configMap.name).data))
          writeFileSync(join(hostPath(m.mountPath), file), rewritePaths(text, hostPath));
      }
      const env = containerEnv(objects, container, secrets, { 'metadata.name': n.name });
      const args = (container.args as string[]).map((a) => (a.startsWith('/') ? hostPath(a) : a));
      const routes = nodes
        .filter((o) => o !== n)
        .map((o) => `nats://127.0.0.1:${o.clusterPort}`)
        .join(',');
      args.push('-a', '127.0.0.1', '-p', String(n.clientPort), '-m', String(n.monitorPort));
      args.push('--cluster', `nats://127.0.0.1:${n.clusterPort}`, '--routes', routes);
      const child = spawn(NATS_SERVER, args, { env: { PATH: process.env.PATH, ...env }, stdio: 'pipe' });
      child.stdout!.resume();
      child.stderr!.on('data', (d: Buffer) => {
        n.stderr = (n.stderr + d.toString()).slice(-4000);
      });
      n.child = child;
    }
    await Promise.all(
      nodes.map((n) =>
        waitFor(
          `rendered ${n.name} healthy`,
          async () => {
            if (n.child?.exitCode !== null) throw new Error(`${n.name} exited: ${n.stderr}`);
            return (await fetch(`http://127.0.0.1:${n.monitorPort}/healthz`)).status === 200;
          },
          30_000,
          100,
        ),
      ),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  // Clients use a host name, as they do in the cluster (`nats`): the client checks the certificate
  // against it. Here it is `localhost`, which the test certificate names.
  return { nodes, url: nodes.map((n) => `tls://localhost:${n.clientPort}`).join(','), stop };
}
