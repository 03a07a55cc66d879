import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AckPolicy, type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import bcrypt from 'bcryptjs';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { freePort, type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { type NatsServer, startNatsServer } from '../../harness/nats.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { loadConfig } from '../../src/config.ts';
import { natsConnectOptions } from '../../src/queue/nats/auth.ts';
import { type K8sObject, renderOverlay } from '../deploy/k8s-render.ts';
import { needTool } from '../deploy/tools.ts';
import { assertAllStoredOnce, message, post, scrape, tempDir, total } from '../helpers/nats-roles.ts';
import {
  containerEnv,
  find,
  materializeVolumes,
  type RenderedNatsCluster,
  type Secrets,
  startRenderedNats,
} from './rendered-nats.ts';
import { makeCa } from './test-ca.ts';

/**
 * A pod in the namespace gets only what its NATS user permits (docs/production.md#nats-security). The prod overlay's
 * NATS cluster is started from its rendered manifests (rendered-nats.ts) with test certificates and
 * passwords, and each role is played against it: the provisioning Job (`intake migrate`), the API and
 * the worker do their jobs through real intake processes, then each NATS user tries what it must not.
 */

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';
const skip =
  needTool('kubectl', ['version', '--client']) ?? needTool(NATS_SERVER) ?? needTool('openssl', ['version']);

// biome-ignore lint/suspicious/noExplicitAny: monitoring JSON
type Any = any;

const ROLES = {
  api: { kind: 'Deployment', name: 'intake-api', secret: 'intake-nats-api' },
  worker: { kind: 'Deployment', name: 'intake-worker', secret: 'intake-nats-worker' },
  provision: { kind: 'Job', name: 'intake-migrate', secret: 'intake-nats-provision' },
} as const;
type Role = keyof typeof ROLES;

/** A NATS request or subscription refused for permissions, as opposed to failing for another reason. */
const PERMISSION = /Permissions Violation/;

/** Routes of a member, from its monitoring port. */
async function routes(monitorPort: number): Promise<number> {
  const r = (await (await fetch(`http://127.0.0.1:${monitorPort}/routez`)).json()) as { num_routes: number };
  return r.num_routes;
}

async function refused(what: string, p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(err, `${what}: allowed, but the role must not be able to`);
  const text = `${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`;
  assert.match(text, PERMISSION, `${what}: failed for another reason: ${text}`);
}

/** Subscribing is refused: the server answers the SUB with a permissions violation and ends it. */
async function subscribeRefused(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject);
  const outcome = await Promise.race([
    (async () => {
      try {
        for await (const _ of sub) return 'message';
        return 'ended';
      } catch (err) {
        return (err as Error).message;
      }
    })(),
    new Promise<string>((r) => setTimeout(() => r('still subscribed after 3 s'), 3000)),
  ]);
  sub.unsubscribe();
  assert.match(outcome, PERMISSION, `subscribe ${subject}: ${outcome}`);
}

describe('NATS users from the rendered prod overlay: each role does its job and nothing else', {
  skip,
}, () => {
  let dir: ReturnType<typeof tempDir>;
  let objects: K8sObject[];
  let secrets: Secrets;
  let cluster: RenderedNatsCluster;
  let db: TestDatabase;
  let caFile: string;
  let rogueCa: ReturnType<typeof makeCa>;
  const procs: IntakeProcess[] = [];
  const extra: NatsServer[] = [];
  const conns: NatsConnection[] = [];
  const ids: string[] = [];

  /** The NATS_* settings a role's pod gets from the rendered manifests, with files in a pod directory. */
  const roleEnv = (role: Role): Record<string, string> => {
    const { kind, name } = ROLES[role];
    const pod = find(objects, kind, name).spec.template.spec;
    const c = pod.containers[0];
    const hostPath = materializeVolumes(objects, pod, c, secrets, join(dir.path, 'pods', name));
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(containerEnv(objects, c, secrets)))
      if (k.startsWith('NATS_')) out[k] = v.startsWith('/') ? hostPath(v) : v;
    assert.match(out.NATS_URL!, /^tls:\/\/nats:4222$/, `${name}: NATS_URL is not TLS to the Service`);
    out.NATS_URL = cluster.url; // DNS: the Service `nats` stands for the three members
    return out;
  };

  const as = async (role: Role): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> => {
    const env = roleEnv(role);
    const nc = await connect({
      servers: cluster.url.split(','),
      user: env.NATS_USER!,
      pass: secrets[ROLES[role].secret]!.password!,
      inboxPrefix: env.NATS_INBOX_PREFIX!,
      tls: { caFile },
      maxReconnectAttempts: 0,
    });
    conns.push(nc);
    return { nc, jsm: await jetstreamManager(nc, { checkAPI: false, timeout: 5000 }) };
  };

  before(async () => {
    dir = tempDir('nats-roles');
    objects = await renderOverlay('prod');
    const ca = makeCa(dir.path, 'nats');
    rogueCa = makeCa(dir.path, 'rogue');
    caFile = ca.cert;
    // The names cert-manager puts in the certificate, plus what the test's DNS gives for them: the
    // members' names become 127.0.0.1 (routes), the Service's becomes localhost (clients).
    const dnsNames: string[] = find(objects, 'Certificate', 'nats-tls').spec.dnsNames;
    const leaf = ca.issue('server', {
      sans: [...dnsNames.map((n) => `DNS:${n}`), 'DNS:localhost', 'IP:127.0.0.1'],
      usages: ['serverAuth', 'clientAuth'],
    });
    const read = (f: string) => readFileSync(f, 'utf8');
    secrets = {
      'nats-tls': { 'tls.crt': read(leaf.cert), 'tls.key': read(leaf.key), 'ca.crt': read(ca.cert) },
      // Mounted by the same pods, not under test here.
      'intake-pg-ca': { 'ca.crt': read(ca.cert) },
      'intake-pg-api': { password: 'unused' },
      'intake-pg-worker': { password: 'unused' },
      'intake-pg-app': { password: 'unused' },
      'intake-api-keys': { 'api-keys': '[]' },
      'intake-pii-master-key': { 'master-key': randomBytes(32).toString('base64') },
    };
    for (const { secret } of Object.values(ROLES)) {
      const password = randomBytes(18).toString('base64url');
      secrets[secret] = { password, bcrypt: bcrypt.hashSync(password, 11) };
    }
    cluster = await startRenderedNats(objects, secrets, join(dir.path, 'nats'));
    db = await createTestDatabase('nats_roles', { migrate: false });
  });

  after(async () => {
    for (const nc of conns) await nc.close().catch(() => {});
    await Promise.all(procs.map((p) => p.stop(5000)));
    for (const s of extra) await s.stop();
    await cluster?.stop();
    await db?.drop();
    dir?.remove();
  });

  test('the cluster formed: every member routes to the other two over mutual TLS', async () => {
    for (const n of cluster.nodes) {
      assert.equal(await routes(n.monitorPort), 2, n.name);
      const varz = (await (await fetch(`http://127.0.0.1:${n.monitorPort}/varz`)).json()) as Record<
        string,
        Any
      >;
      assert.equal(varz.tls_required, true, `${n.name}: clients need no TLS`);
      assert.equal(varz.cluster.tls_required, true, `${n.name}: routes need no TLS`);
      assert.equal(varz.cluster.tls_verify, true, `${n.name}: routes' certificates are not verified`);
    }
  });

  test('a client without credentials, or with a wrong password, is refused', async () => {
    const servers = cluster.url.split(',');
    await assert.rejects(connect({ servers, tls: { caFile }, maxReconnectAttempts: 0 }), /Authorization/);
    await assert.rejects(
      connect({ servers, user: 'intake-api', pass: 'guess', tls: { caFile }, maxReconnectAttempts: 0 }),
      /Authorization/,
    );
  });

  test('a client without TLS is refused, even with the right password', async () => {
    const port = cluster.nodes[0]!.clientPort;
    const said = await new Promise<string>((resolve, reject) => {
      const s = tcpConnect(port, '127.0.0.1');
      let text = '';
      s.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.startsWith('INFO ') && text.includes('\r\n') && !s.writableEnded) {
          const creds = { user: 'intake-api', pass: secrets['intake-nats-api']!.password, verbose: true };
          s.write(`CONNECT ${JSON.stringify(creds)}\r\nPING\r\n`);
        }
      });
      s.on('error', reject);
      s.on('close', () => resolve(text));
      s.setTimeout(5000, () => s.destroy());
    });
    const info = JSON.parse(said.slice(5, said.indexOf('\r\n')));
    assert.equal(info.tls_required, true);
    // The server expects a TLS handshake after its INFO: the plaintext CONNECT ends the connection.
    assert.doesNotMatch(said, /PONG|\+OK/, 'the plaintext connection was served');
  });

  test('a client that does not trust the NATS CA does not connect', async () => {
    await assert.rejects(
      connect({
        servers: cluster.url.split(','),
        user: 'intake-api',
        pass: secrets['intake-nats-api']!.password!,
        tls: { caFile: rogueCa.cert },
        maxReconnectAttempts: 0,
      }),
      /certificate|self.signed|issuer/i,
    );
  });

  test("intake's own settings refuse a server it cannot verify: another CA, or no TLS", async () => {
    const env = roleEnv('worker');
    const opts = natsConnectOptions(
      loadConfig({ ...env, DATABASE_URL: db.url }, commandNamed('worker')).nats,
    );
    const impostorCert = rogueCa.issue('impostor', { sans: ['DNS:nats', 'DNS:localhost'] });
    const impostorPort = await freePort();
    const impostor = spawn(NATS_SERVER, [
      '-a',
      '127.0.0.1',
      '-p',
      String(impostorPort),
      '--tls',
      '--tlscert',
      impostorCert.cert,
      '--tlskey',
      impostorCert.key,
    ]);
    try {
      await waitFor('impostor listening', () => canConnect(impostorPort), 10_000, 50);
      await assert.rejects(
        connect({ servers: `tls://localhost:${impostorPort}`, ...opts, maxReconnectAttempts: 0 }),
        /certificate|self.signed|issuer/i,
      );
    } finally {
      impostor.kill('SIGKILL');
    }
    const plain = await startNatsServer();
    extra.push(plain);
    await assert.rejects(
      connect({ servers: plain.url, ...opts, maxReconnectAttempts: 0 }),
      /does not support 'tls'/,
    );
  });

  test('a route from a certificate the NATS CA did not issue is refused', async () => {
    const intruder = rogueCa.issue('intruder', {
      sans: ['DNS:nats-9.nats-headless', 'IP:127.0.0.1'],
      usages: ['serverAuth', 'clientAuth'],
    });
    const conf = join(dir.path, 'intruder.conf');
    const target = cluster.nodes[0]!;
    // It trusts the real CA, so only the member's check of the intruder's certificate can stop it.
    writeFileSync(
      conf,
      `cluster { name: intake-nats, port: ${await freePort()}, routes: ["nats://127.0.0.1:${target.clusterPort}"],
        tls { cert_file: "${intruder.cert}", key_file: "${intruder.key}", ca_file: "${caFile}", verify: true } }`,
    );
    const monitor = await freePort();
    const child = spawn(
      NATS_SERVER,
      ['-c', conf, '-a', '127.0.0.1', '-p', String(await freePort())].concat(['-m', String(monitor)]),
    );
    try {
      await waitFor('intruder up', async () => (await fetch(`http://127.0.0.1:${monitor}/healthz`)).ok);
      // nats-server retries a failed route every second: give it a few tries.
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(await routes(monitor), 0, 'the intruder formed a route');
      assert.equal(await routes(target.monitorPort), 2);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('the migration Job provisions the stream, the consumer and the bucket with its own user', async () => {
    const p = await startIntakeProcess(
      'migrate',
      { ...roleEnv('provision'), DATABASE_URL: db.url, INTAKE_DATA_DIR: join(dir.path, 'migrate') },
      { waitReady: false },
    );
    const { code } = await p.exited;
    assert.equal(code, 0, p.stderr.join(''));
    assert.match(p.stderr.join(''), /NATS stream INTAKE and consumer intake-writer ready/);
    const { jsm } = await as('provision');
    for (const s of ['INTAKE', 'INTAKE-probe', 'KV_INTAKE-idempotency'])
      assert.equal((await jsm.streams.info(s)).config.num_replicas, 3, s);
    assert.equal((await jsm.consumers.info('INTAKE', 'intake-writer')).config.ack_policy, AckPolicy.Explicit);
  });

  test('the API publishes, counts and erases, the worker stores: no permission refused', async () => {
    const base = { DATABASE_URL: db.url, LOG_LEVEL: 'info' };
    const api = await startIntakeProcess('api', {
      ...roleEnv('api'),
      ...base,
      INTAKE_DATA_DIR: join(dir.path, 'api'),
    });
    procs.push(api);
    for (let i = 0; i < 5; i++) {
      const r = await post(api.url, message(i, 'nats-roles'), { 'idempotency-key': `k-${i}` });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      ids.push(String(r.json.id));
    }
    // GDPR export counts what is still on the stream: an ordered consumer, under the API's user.
    const exported = await fetch(`${api.url}/v1/subjects/ip/10.1.2.3/messages`);
    assert.equal(exported.status, 200, await exported.clone().text());
    assert.equal(((await exported.json()) as { queued: number }).queued, 5);
    const worker = await startIntakeProcess('worker', {
      ...roleEnv('worker'),
      ...base,
      INTAKE_DATA_DIR: join(dir.path, 'worker'),
    });
    procs.push(worker);
    await assertAllStoredOnce(db.url, ids, 60_000, procs);
    // GDPR erasure removes the subject's Idempotency-Key claims from the bucket, under the API's user.
    const erased = await fetch(`${api.url}/v1/subjects/ip/10.1.2.3`, { method: 'DELETE' });
    assert.equal(erased.status, 200, await erased.clone().text());
    assert.equal(
      ((await erased.json()) as { erased: { idempotency_keys: number } }).erased.idempotency_keys,
      5,
    );
    // One stream-usage tick (every 5 s) in both, then nothing either did may have been refused.
    await new Promise((r) => setTimeout(r, 6000));
    for (const p of [api, worker]) {
      const text = p.logs.map((l) => JSON.stringify(l)).join('\n') + p.stderr.join('');
      assert.doesNotMatch(text, PERMISSION);
    }
    // Both users may read the Idempotency-Key bucket's usage: each exports the bucket's limit.
    const { jsm } = await as('provision');
    const limit = (await jsm.streams.info('KV_INTAKE-idempotency')).config.max_bytes;
    assert.ok(limit > 0, 'the overlay bounds the bucket');
    for (const p of [api, worker]) {
      const m = await scrape(p.url);
      assert.equal(m.get('intake_queue_idempotency_bucket_limit_bytes{bucket="INTAKE-idempotency"}'), limit);
      assert.equal(total(m, 'intake_maintenance_failures_total'), 0);
    }
  });

  test('an API whose settings differ from the stream starts, and leaves the stream to intake migrate', async () => {
    const { jsm } = await as('provision');
    const before = (await jsm.streams.info('INTAKE')).config.duplicate_window;
    // An old pod during a rollout, or a setting changed since the last migrate.
    const drifted = await startIntakeProcess('api', {
      ...roleEnv('api'),
      DATABASE_URL: db.url,
      NATS_DUPLICATE_WINDOW_S: '61',
      INTAKE_DATA_DIR: join(dir.path, 'api'), // the first API's (development) PII key
    });
    procs.push(drifted);
    assert.equal((await fetch(`${drifted.url}/readyz`)).status, 200);
    assert.equal(
      (await jsm.streams.info('INTAKE')).config.duplicate_window,
      before,
      'the stream is unchanged',
    );
    assert.ok(
      drifted.logs.some((l) => String(l.msg).includes('this NATS user may not change them')),
      'the drift is reported',
    );
    await drifted.stop(5000);
  });

  test('the API cannot consume, acknowledge, delete or purge, nor read the worker’s replies', async () => {
    const { nc, jsm } = await as('api');
    assert.equal((await jsm.streams.info('INTAKE')).config.name, 'INTAKE', 'control: info is allowed');
    await refused('delete the stream', jsm.streams.delete('INTAKE'));
    await refused('purge the stream', jsm.streams.purge('INTAKE'));
    await refused('purge the bucket', jsm.streams.purge('KV_INTAKE-idempotency'));
    await refused('change the stream', jsm.streams.update('INTAKE', { max_age: 1_000_000_000 }));
    await refused('create a stream', jsm.streams.add({ name: 'ROGUE', subjects: ['rogue.>'] }));
    await refused('delete the consumer', jsm.consumers.delete('INTAKE', 'intake-writer'));
    await refused('change the consumer', jsm.consumers.update('INTAKE', 'intake-writer', { ack_wait: 1e9 }));
    await refused(
      "pull from the writer's consumer",
      nc.request('$JS.API.CONSUMER.MSG.NEXT.INTAKE.intake-writer', '{"batch":1,"no_wait":true}'),
    );
    await refused('acknowledge a delivery', nc.request('$JS.ACK.INTAKE.intake-writer.1.1.1.1.1.0'));
    for (const s of ['intake.messages', '_INBOX.intake-worker.>', '_INBOX.>', '$JS.ACK.>'])
      await subscribeRefused(nc, s);
  });

  test('the worker cannot publish as a sender, touch Idempotency-Keys, delete streams or read the API’s replies', async () => {
    const { nc, jsm } = await as('worker');
    assert.ok((await jsm.consumers.info('INTAKE', 'intake-writer')).num_pending >= 0, 'control');
    await refused('publish a message', nc.request('intake.messages', '{"v":1,"messages":[]}'));
    await refused('write an Idempotency-Key', nc.request('$KV.INTAKE-idempotency.k', 'x'));
    await refused(
      'read an Idempotency-Key',
      nc.request(
        '$JS.API.STREAM.MSG.GET.KV_INTAKE-idempotency',
        '{"last_by_subj":"$KV.INTAKE-idempotency.k"}',
      ),
    );
    await refused('delete the stream', jsm.streams.delete('INTAKE'));
    await refused('delete the bucket', jsm.streams.delete('KV_INTAKE-idempotency'));
    await refused('purge the bucket', jsm.streams.purge('KV_INTAKE-idempotency'));
    await refused('purge the probe stream', jsm.streams.purge('INTAKE-probe'));
    await refused('change the stream', jsm.streams.update('INTAKE', { max_age: 1_000_000_000 }));
    await refused('delete the consumer', jsm.consumers.delete('INTAKE', 'intake-writer'));
    await refused(
      'create another consumer',
      jsm.consumers.add('INTAKE', {
        name: 'peek',
        ack_policy: AckPolicy.None,
        filter_subject: 'intake.messages',
      }),
    );
    for (const s of ['intake.messages', '_INBOX.intake-api.>', '$KV.>']) await subscribeRefused(nc, s);
    // What it holds by design: trimming is a purge below a sequence (permissions.conf). Every message
    // is stored by now; the oldest one goes.
    const first = (await jsm.streams.info('INTAKE')).state.first_seq;
    assert.equal((await jsm.streams.purge('INTAKE', { seq: first + 1 })).purged, 1);
  });

  test('the provisioning user cannot read, write, delete or purge messages', async () => {
    const { nc, jsm } = await as('provision');
    await refused('publish a message', nc.request('intake.messages', 'x'));
    await refused(
      "pull from the writer's consumer",
      nc.request('$JS.API.CONSUMER.MSG.NEXT.INTAKE.intake-writer', '{"batch":1,"no_wait":true}'),
    );
    await refused('delete the stream', jsm.streams.delete('INTAKE'));
    await refused('purge the stream', jsm.streams.purge('INTAKE'));
    await refused('delete the consumer', jsm.consumers.delete('INTAKE', 'intake-writer'));
    await subscribeRefused(nc, 'intake.messages');
  });
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
