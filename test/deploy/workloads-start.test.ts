import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import pg from 'pg';
import { quietLog, waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres.ts';
import { FakeApiServer, kubeconfigFor } from '../pod-watcher/fake-apiserver.ts';
import { startRenderedNats } from '../security/rendered-nats.ts';
import { makeCa, type TestCa } from '../security/test-ca.ts';
import { type K8sObject, OVERLAYS, renderOverlay } from './k8s-render.ts';
import {
  ClusterState,
  ourContainers,
  type PodSpec,
  type PreparedProcess,
  prepare,
  type Runner,
  type RunningProcess,
  runIntake,
  start,
} from './pod-emulator.ts';
import { needTool, REPO } from './tools.ts';

/**
 * Every workload of ours starts with exactly what its rendered manifest gives it (test/deploy/
 * pod-emulator.ts says how a pod is emulated): the migration Job exits 0, every Deployment becomes
 * Ready, the smoke CronJob's job exits 0 (a canary through API → NATS → worker → PostgreSQL), and
 * `intake doctor` in the API container's environment passes. Against a real PostgreSQL set up as
 * CloudNativePG would from the rendered Cluster (owner, database, managed login roles with the
 * passwords of their Secrets, password authentication, TLS from its CA) and the rendered 3-node
 * JetStream cluster (test/security/rendered-nats.ts: its users, permissions and TLS). Secrets the overlay does not generate are made as a secret
 * manager would; the pod watcher talks to the fake API server.
 */

const run = promisify(execFile);
const skip =
  needTool('kubectl', ['version', '--client']) ??
  needTool('go', ['version']) ??
  needTool('nats-server') ??
  needTool('openssl', ['version']);

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any;

/**
 * A secret manager: makes each Secret an overlay expects from outside (its expected-secrets file,
 * docs/deployment.md#secrets) with fresh values, as an operator would before the first deploy.
 */
function secretManager(overlay: string): Record<string, Record<string, string>> {
  const svc = generateKey('svc-a', ['ingest', 'read']);
  const smoke = generateKey('intake-smoke', ['ingest', 'read'], ['intake-smoke']);
  const password = () => randomBytes(18).toString('base64url');
  // A NATS user's Secret: the password for intake's pod, its bcrypt hash for the servers.
  const natsUser = () => {
    const p = password();
    return { password: p, bcrypt: bcrypt.hashSync(p, 10) };
  };
  const make: Record<string, () => Record<string, string>> = {
    'intake-api-keys': () => ({ 'api-keys': JSON.stringify([svc.entry, smoke.entry]) }),
    'intake-pii-master-key': () => ({ 'master-key': randomBytes(32).toString('base64') }),
    'intake-smoke-key': () => ({ key: smoke.key }),
    'intake-pg-api': () => ({ username: 'intake_api', password: password() }),
    'intake-pg-worker': () => ({ username: 'intake_worker', password: password() }),
    'intake-nats-api': natsUser,
    'intake-nats-worker': natsUser,
    'intake-nats-provision': natsUser,
    // Read by CloudNativePG's backup, not by any process started here.
    'intake-pg-backup': () => ({ ACCESS_KEY_ID: 'AKIATEST', ACCESS_SECRET_KEY: password() }),
  };
  const names = readFileSync(join(REPO, 'deploy/k8s/overlays', overlay, 'expected-secrets'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  return Object.fromEntries(
    names.map((n) => {
      assert.ok(make[n], `no way to make Secret ${n}: add what it holds to this secret manager`);
      return [n, make[n]()];
    }),
  );
}

/**
 * What CloudNativePG does for the rendered Cluster: the owner role and database of bootstrap.initdb,
 * the Secret `<cluster>-app` with its `uri`, the managed login roles with the passwords of their
 * Secrets, password authentication for everyone but the superuser, and TLS: a server certificate for
 * its Services from its own CA, published in the Secret `<cluster>-ca` (the test's DNS resolves the
 * Service to 127.0.0.1, which the certificate names too), and TLS required (hostssl).
 */
async function emulateCloudNativePg(
  cluster: K8sObject,
  state: ClusterState,
  superUrl: string,
  pgdata: string,
  ca: TestCa,
) {
  const rw = `${cluster.metadata.name}-rw`;
  const leaf = ca.issue(rw, { sans: [`DNS:${rw}`, `DNS:${rw}.${state.namespace}.svc`, 'IP:127.0.0.1'] });
  const pgOwner = statSync(pgdata);
  for (const [from, to] of [
    [leaf.cert, 'server.crt'],
    [leaf.key, 'server.key'],
  ] as const) {
    copyFileSync(from, join(pgdata, to));
    chownSync(join(pgdata, to), pgOwner.uid, pgOwner.gid);
    chmodSync(join(pgdata, to), 0o600);
  }
  state.addSecret(`${cluster.metadata.name}-ca`, { 'ca.crt': readFileSync(ca.cert, 'utf8') });
  const { database, owner } = cluster.spec.bootstrap.initdb;
  const ownerPassword = randomBytes(18).toString('base64url');
  const db = new pg.Client({ connectionString: superUrl });
  await db.connect();
  try {
    const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
    await db.query(`CREATE ROLE ${owner} LOGIN PASSWORD ${lit(ownerPassword)}`);
    await db.query(`CREATE DATABASE ${database} OWNER ${owner}`);
    for (const r of cluster.spec.managed?.roles ?? []) {
      const password = state.value('Secret', r.passwordSecret.name, 'password');
      await db.query(
        `CREATE ROLE ${r.name} ${r.login ? 'LOGIN' : 'NOLOGIN'} CONNECTION LIMIT ${r.connectionLimit ?? -1} PASSWORD ${lit(password!)}`,
      );
    }
    writeFileSync(
      join(pgdata, 'pg_hba.conf'),
      'host all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n',
    );
    await db.query("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
    await db.query("ALTER SYSTEM SET ssl_key_file = 'server.key'");
    await db.query('ALTER SYSTEM SET ssl = on');
    await db.query('SELECT pg_reload_conf()');
  } finally {
    await db.end();
  }
  const host = `${cluster.metadata.name}-rw.${state.namespace}`;
  state.addSecret(`${cluster.metadata.name}-app`, {
    username: owner,
    password: ownerPassword,
    dbname: database,
    host,
    port: '5432',
    uri: `postgresql://${owner}:${encodeURIComponent(ownerPassword)}@${host}:5432/${database}`,
  });
}

/**
 * What cert-manager does for the rendered Certificates issued by a CA Issuer: the Secret with
 * tls.crt, tls.key and ca.crt, for the certificate's names plus the test's DNS for them (members →
 * 127.0.0.1, the client Service → localhost).
 */
function emulateCertManager(objects: K8sObject[], state: ClusterState, ca: TestCa) {
  const caIssuers = new Set(
    objects.filter((o) => o.kind === 'Issuer' && o.spec.ca).map((o) => o.metadata.name),
  );
  for (const c of objects.filter((o) => o.kind === 'Certificate' && caIssuers.has(o.spec.issuerRef.name))) {
    const leaf = ca.issue(c.metadata.name, {
      sans: [...c.spec.dnsNames.map((n: string) => `DNS:${n}`), 'DNS:localhost', 'IP:127.0.0.1'],
      usages: ['serverAuth', 'clientAuth'],
    });
    const read = (f: string) => readFileSync(f, 'utf8');
    state.addSecret(c.spec.secretName, {
      'tls.crt': read(leaf.cert),
      'tls.key': read(leaf.key),
      'ca.crt': read(ca.cert),
    });
  }
}

async function goAppBinary(dir: string): Promise<string> {
  const out = join(dir, 'go-app');
  await run('go', ['build', '-o', out, '.'], {
    cwd: join(REPO, 'go-app'),
    env: { ...process.env, GOPROXY: 'off', CGO_ENABLED: '0' },
    timeout: 180_000,
  });
  return out;
}

/** Polls the container's readinessProbe (httpGet) on its local port until 200, as the kubelet does. */
async function waitReady(pod: PodSpec, p: PreparedProcess, proc: RunningProcess) {
  const probe = pod.container.readinessProbe?.httpGet;
  assert.ok(probe, `${pod.owner.metadata.name}: no httpGet readinessProbe`);
  const port = p.ports.get(probe.port);
  assert.ok(port, `${pod.owner.metadata.name}: the probe's port ${probe.port} is not a containerPort`);
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  await waitFor(
    `${pod.owner.metadata.name} to become ready`,
    async () => {
      if (exited) throw new Error(`exited before it was ready:\n${proc.output()}`);
      const r = await fetch(`http://127.0.0.1:${port}${probe.path}`, { signal: AbortSignal.timeout(2000) });
      return r.status === 200;
    },
    90_000,
    200,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n--- output ---\n${proc.output()}`);
  });
}

async function runToCompletion(what: string, proc: RunningProcess, timeoutMs = 90_000) {
  const timer = setTimeout(() => void proc.stop(1000), timeoutMs);
  const { code, signal } = await proc.exited;
  clearTimeout(timer);
  assert.equal(code, 0, `${what} exited ${code ?? signal}:\n${proc.output()}`);
  return proc.output();
}

async function runOverlay(t: TestContext, overlay: string) {
  const objects = await renderOverlay(overlay);
  const namespace = objects.find((o) => o.kind === 'Namespace')!.metadata.name;
  const state = new ClusterState(namespace, objects);
  const root = mkdtempSync(join(tmpdir(), `workloads-${overlay}-`));
  chmodSync(root, 0o755); // PostgreSQL runs as its own user below it
  t.after(() => rmSync(root, { recursive: true, force: true }));

  // Secrets the overlay expects from outside (docs/deployment.md#secrets): made as a secret manager would.
  for (const [name, values] of Object.entries(secretManager(overlay))) state.addSecret(name, values);

  const pgdir = join(root, 'postgres');
  const db = await startEmbeddedPostgres(pgdir, quietLog, { listenTcp: true });
  t.after(() => db.stop());
  const cluster = objects.find((o) => o.kind === 'Cluster')!;
  await emulateCloudNativePg(cluster, state, db.url, join(pgdir, 'pg'), makeCa(root, 'cnpg'));
  state.addEndpoint(`${cluster.metadata.name}-rw`, 5432, db.port);

  // NATS as the overlay renders it (users, permissions, TLS), its certificate made as cert-manager would.
  emulateCertManager(objects, state, makeCa(root, 'nats'));
  const nats = await startRenderedNats(objects, Object.fromEntries(state.secrets), join(root, 'nats'));
  t.after(() => nats.stop());
  state.addEndpoint('nats', 4222, nats.nodes[0]!.clientPort, 'localhost');

  const fake = await FakeApiServer.start();
  t.after(() => fake.close());
  const kubeconfig = join(root, 'kubeconfig');
  writeFileSync(kubeconfig, kubeconfigFor(fake.url, 'pod-watcher-token'));

  const goApp = await goAppBinary(root);
  const runners: Record<string, Runner> = {
    intake: runIntake,
    'go-app': (argv) => {
      assert.deepEqual(argv.slice(0, 1), ['/go-app'], 'the go-app image runs /go-app');
      return [goApp, ...argv.slice(1)];
    },
  };

  const pods = ourContainers(objects);
  const kinds = (k: string) => pods.filter((p) => p.owner.kind === k);
  assert.ok(kinds('Job').length >= 1 && kinds('Deployment').length >= 4 && kinds('CronJob').length >= 1);
  const running: RunningProcess[] = [];
  t.after(async () => {
    await Promise.all(running.map((p) => p.stop(5000)));
  });
  const launch = async (pod: PodSpec, argsOverride?: string[]) => {
    // A pod that mounts a service account token talks to the API server; here, the fake one.
    const extra: Record<string, string> =
      pod.podSpec.automountServiceAccountToken === true ? { KUBECONFIG: kubeconfig } : {};
    const c = argsOverride ? { ...pod, container: { ...pod.container, args: argsOverride } } : pod;
    const dir = mkdtempSync(join(root, `${pod.owner.metadata.name}-`));
    const p = await prepare(c, state, dir, runners, extra);
    const proc = start(p);
    running.push(proc);
    return { p, proc };
  };

  // 1. The migration Job (deploy-apps runs it before any rollout).
  for (const job of kinds('Job')) {
    const { proc } = await launch(job);
    await runToCompletion(`${overlay}: Job ${job.owner.metadata.name}`, proc);
  }

  // 2. Every Deployment becomes Ready; Services route to the ready pods.
  const services = objects.filter((o) => o.kind === 'Service');
  for (const d of kinds('Deployment')) {
    const { p, proc } = await launch(d);
    await waitReady(d, p, proc);
    for (const s of services.filter((s) =>
      Object.entries<string>(s.spec.selector ?? {}).every(([k, v]) => d.identity.labels[k] === v),
    )) {
      for (const port of s.spec.ports) {
        const local = p.ports.get(port.targetPort ?? port.port);
        if (local) state.addEndpoint(s.metadata.name, port.port, local);
      }
    }
  }

  // 3. The synthetic check's job: a canary through API → queue → worker → PostgreSQL.
  for (const cron of kinds('CronJob')) {
    const { proc } = await launch(cron);
    await runToCompletion(`${overlay}: CronJob ${cron.owner.metadata.name}`, proc);
  }

  // 4. The pre-deployment check, as `kubectl exec deploy/intake-api -- node dist/cli.js doctor` runs it.
  const api = kinds('Deployment').find((d) => d.owner.metadata.name === 'intake-api')!;
  const doctor = await launch(api, ['doctor']);
  const out = await runToCompletion(`${overlay}: intake doctor in the API container`, doctor.proc);
  assert.doesNotMatch(out, /FAIL/);
  assert.match(
    out,
    /^ok\s+secrets\s+mounted: INTAKE_API_KEYS_FILE, INTAKE_PII_MASTER_KEY_FILE, NATS_PASSWORD_FILE, NATS_TLS_CA_FILE$/m,
  );
  // Both links are TLS and checked against the operators' CAs (CloudNativePG's, the NATS one).
  assert.match(out, /^ok\s+database tls\s+TLS \(TLSv1\.\d\), server certificate and host name verified/m);
  assert.match(
    out,
    /^ok\s+nats\s+reachable \(.*TLS, server certificate verified against NATS_TLS_CA_FILE\)$/m,
  );
  t.diagnostic(`${overlay}: intake doctor in the API container:\n${out}`);

  // 5. Every Deployment drains and exits 0 on SIGTERM.
  for (const proc of running.slice()) {
    if (proc.child.exitCode !== null) continue;
    await proc.stop(30_000);
    assert.equal((await proc.exited).code, 0, `did not exit 0 on SIGTERM:\n${proc.output()}`);
  }
}

describe('every rendered workload starts with exactly what its manifest gives it', { skip }, () => {
  for (const overlay of OVERLAYS) {
    test(`${overlay}: migrate exits 0, every Deployment is Ready, smoke and doctor pass`, async (t) => {
      await runOverlay(t, overlay);
    });
  }

  test('the emulator itself refuses what a kubelet refuses: a missing Secret key', async () => {
    const objects = await renderOverlay('dev');
    const state = new ClusterState('intake-dev', objects);
    // What the operators make (cert-manager, CloudNativePG), present so the key is what is missing.
    state.addSecret('nats-tls', { 'tls.crt': '', 'tls.key': '', 'ca.crt': '' });
    state.addSecret('intake-pg-ca', { 'ca.crt': '' });
    const api = ourContainers(objects).find((p) => p.owner.metadata.name === 'intake-api')!;
    const broken = structuredClone(api);
    broken.container.env.find((e: Any) => e.valueFrom?.secretKeyRef).valueFrom.secretKeyRef.key = 'nope';
    const root = mkdtempSync(join(tmpdir(), 'workloads-neg-'));
    try {
      await assert.rejects(prepare(broken, state, root, { intake: runIntake }), /has no key nope/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
