import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import bcrypt from 'bcryptjs';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { FakeApiServer, kubeconfigFor } from '../pod-watcher/fake-apiserver.ts';
import {
  dockerOk,
  HARDENED,
  IMAGES,
  imageSizeMb,
  intakeArgs,
  logs,
  requireImages,
  runDetached,
  state,
  waitHttp,
} from './docker.ts';

/**
 * Every image runs as a non-root user, with a read-only root filesystem, no capabilities and no way to
 * gain privileges, and does its job that way: facts read from the kernel (/proc of the container's
 * PID 1, as seen from this host), not from the image's metadata alone.
 */
requireImages();

interface ProcessFacts {
  uid: number;
  gid: number;
  capEff: string;
  capBnd: string;
  noNewPrivs: number;
  rootReadOnly: boolean;
}

/** What the kernel says about a running container's PID 1. */
async function processFacts(name: string): Promise<ProcessFacts> {
  const pid = Number(await dockerOk(['inspect', '--format', '{{.State.Pid}}', name]));
  assert.ok(pid > 0, `${name} is not running`);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => new RegExp(`^${k}:\\s*(.+)$`, 'm').exec(status)![1]!.trim();
  // mountinfo: "id parent major:minor root mountpoint options …"; the container's / is mount point "/".
  const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[4] === '/');
  return {
    uid: Number(field('Uid').split(/\s+/)[0]),
    gid: Number(field('Gid').split(/\s+/)[0]),
    capEff: field('CapEff'),
    capBnd: field('CapBnd'),
    noNewPrivs: Number(field('NoNewPrivs')),
    rootReadOnly: root?.[5]?.split(',').includes('ro') ?? false,
  };
}

function assertHardened(name: string, facts: ProcessFacts, uid: number) {
  assert.equal(facts.uid, uid, `${name}: runs as uid ${facts.uid}`);
  assert.notEqual(facts.gid, 0, `${name}: runs with gid 0`);
  assert.equal(BigInt(`0x${facts.capEff}`), 0n, `${name}: effective capabilities ${facts.capEff}`);
  assert.equal(BigInt(`0x${facts.capBnd}`), 0n, `${name}: bounding capabilities ${facts.capBnd}`);
  assert.equal(facts.noNewPrivs, 1, `${name}: no_new_privs is not set`);
  assert.ok(facts.rootReadOnly, `${name}: the root filesystem is writable`);
}

describe('images', () => {
  const sizes: Record<string, number> = {};
  after(() => {
    const lines = Object.entries(sizes).map(([i, mb]) => `  ${i.padEnd(40)} ${mb.toFixed(1).padStart(7)} MB`);
    console.log(`# image sizes\n${lines.join('\n')}`);
  });

  test('each image declares a numeric non-root user; sizes', async (t) => {
    for (const [what, image] of Object.entries(IMAGES)) {
      if (what === 'postgres') continue; // a test fixture, not one of ours
      const user = await dockerOk(['image', 'inspect', '--format', '{{.Config.User}}', image]);
      assert.match(user, /^[1-9]\d*(:\d+)?$/, `${image}: USER "${user}"`);
      sizes[image] = await imageSizeMb(image);
      t.diagnostic(`${image}: user ${user}, ${sizes[image]!.toFixed(1)} MB`);
    }
    // go-app is a static binary on scratch: anything much larger means a toolchain leaked into it.
    assert.ok(sizes[IMAGES.goApp]! < 20, `go-app is ${sizes[IMAGES.goApp]} MB`);
  });

  describe('intake', () => {
    let db: TestDatabase;
    before(async () => {
      db = await createTestDatabase('ct_images', { migrate: false });
    });
    after(() => db.drop());

    test('intake start: read-only, no capabilities, uid 10001; migrates, accepts, stores, drains', async (t) => {
      const port = await freePort();
      const { key, args } = intakeArgs('start', { DATABASE_URL: db.url, PORT: String(port) });
      const name = await runDetached(t, 'intake', args);
      const url = `http://127.0.0.1:${port}`;
      await waitHttp(name, `${url}/readyz`);
      assertHardened(name, await processFacts(name), 10001);

      const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
      const res = await fetch(`${url}/v1/messages`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ ts: 1530228282, sender: 'ct', message: { a: 1 }, 'sent-from-ip': '1.2.3.4' }),
      });
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = (await res.json()) as { id: string };
      await waitFor('the message to be stored', async () => {
        const r = await fetch(`${url}/v1/messages/${id}`, { headers: auth });
        return r.status === 200;
      });

      // Operator commands run in the same container (kubectl exec); `pii` names its actor from the
      // user database, which must know uid 10001.
      const exported = await dockerOk(['exec', name, 'node', 'dist/cli.js', 'pii', 'export', '1.2.3.4']);
      assert.equal((JSON.parse(exported) as { messages: unknown[] }).messages.length, 1);
      const write = await dockerOk([
        'exec',
        name,
        'node',
        '-e',
        "try { require('fs').writeFileSync('/app/x', 'x'); console.log('written') } catch (e) { console.log(e.code) }",
      ]);
      assert.equal(write, 'EROFS');
      // No package manager left in the runtime image (Dockerfile): nothing to fetch packages with.
      const managers = await dockerOk([
        'exec',
        name,
        'sh',
        '-c',
        'for c in npm npx corepack yarn yarnpkg; do command -v "$c"; done; ls /usr/local/lib/node_modules 2>/dev/null; true',
      ]);
      assert.equal(managers, '', `package managers in the image: ${managers}`);

      const started = Date.now();
      await dockerOk(['stop', '--time', '35', name]);
      const s = await state(name);
      t.diagnostic(`intake: docker stop took ${Date.now() - started} ms, exit ${s.ExitCode}`);
      assert.equal(s.ExitCode, 0, await logs(name));
    });
  });

  test('go-app: read-only, no capabilities, uid 65532; answers and drains', async (t) => {
    const port = await freePort();
    const name = await runDetached(t, 'go-app', [
      '--network',
      'host',
      ...HARDENED,
      '-e',
      `PORT=${port}`,
      '-e',
      'HOST=127.0.0.1',
      IMAGES.goApp,
    ]);
    await waitHttp(name, `http://127.0.0.1:${port}/healthz`);
    assertHardened(name, await processFacts(name), 65532);
    const r = await fetch(`http://127.0.0.1:${port}/?delay=50`);
    assert.equal(await r.text(), 'Hi!\n');
    await dockerOk(['stop', '--time', '35', name]);
    assert.equal((await state(name)).ExitCode, 0, await logs(name));
  });

  test('nats: read-only, no capabilities, uid 10002; users only; JetStream stores on its volume; healthy', async (t) => {
    const [client, monitor] = [await freePort(), await freePort()];
    // The image's users (deploy/nats/permissions.conf), with this test's passwords.
    const passwords = { API: 'ct-api', WORKER: 'ct-worker', PROVISION: 'ct-provision' };
    const hashes = Object.entries(passwords).flatMap(([role, pw]) => [
      '-e',
      `NATS_${role}_PASSWORD_HASH="${bcrypt.hashSync(pw, 10)}"`,
    ]);
    const name = await runDetached(t, 'nats', [
      ...HARDENED,
      '--tmpfs',
      '/var/run/nats:uid=10002,gid=10002',
      '-p',
      `127.0.0.1:${client}:4222`,
      '-p',
      `127.0.0.1:${monitor}:8222`,
      ...hashes,
      IMAGES.nats,
    ]);
    await waitHttp(name, `http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`);
    assertHardened(name, await processFacts(name), 10002);

    const servers = `127.0.0.1:${client}`;
    await assert.rejects(connect({ servers, timeout: 5000, maxReconnectAttempts: 0 }), /Authorization/);
    const as = (user: string, pass: string) =>
      connect({ servers, user, pass, inboxPrefix: `_INBOX.${user}`, timeout: 5000 });
    const provision = await as('intake-provision', passwords.PROVISION);
    const api = await as('intake-api', passwords.API);
    try {
      const jsm = await jetstreamManager(provision, { checkAPI: false });
      await jsm.streams.add({ name: 'INTAKE', subjects: ['intake.messages'], storage: StorageType.File });
      const ack = await jetstream(api).publish('intake.messages', 'hello');
      assert.equal(ack.stream, 'INTAKE');
      assert.equal((await jsm.streams.info('INTAKE')).state.messages, 1);
    } finally {
      await provision.close();
      await api.close();
    }
    // The image's own HEALTHCHECK (wget on the monitoring port) must work with this base.
    await waitFor(
      'the HEALTHCHECK to report healthy',
      async () => (await state(name)).Health?.Status === 'healthy',
      60_000,
      500,
    );
    await dockerOk(['stop', '--time', '45', name]);
    assert.equal((await state(name)).ExitCode, 0, await logs(name));
  });

  test('pod watcher (intake image): read-only, no capabilities; leads, logs new pods, serves /metrics', async (t) => {
    const fake = await FakeApiServer.start();
    t.after(() => fake.close());
    const dir = mkdtempSync(join(tmpdir(), 'ct-pod-watcher-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, kubeconfigFor(fake.url, 'ct-token'));
    chmodSync(dir, 0o755);
    chmodSync(kubeconfig, 0o644); // readable by uid 10001 in the container
    const port = await freePort();
    const name = await runDetached(t, 'pod-watcher', [
      '--network',
      'host',
      ...HARDENED,
      '--tmpfs',
      '/tmp',
      '-v',
      `${kubeconfig}:/etc/kube/config:ro`,
      '-e',
      'KUBECONFIG=/etc/kube/config',
      '-e',
      'POD_NAME=pod-watcher-ct',
      '-e',
      'NAMESPACE=intake-ct',
      '-e',
      `METRICS_PORT=${port}`,
      '-e',
      'HOST=127.0.0.1',
      '--entrypoint',
      'node',
      IMAGES.intake,
      'dist/pod-watcher/main.js',
    ]);
    const metrics = `http://127.0.0.1:${port}/metrics`;
    await waitHttp(name, metrics);
    assertHardened(name, await processFacts(name), 10001);
    await waitFor(
      'leadership',
      async () => /^pod_watcher_is_leader\{[^}]*\} 1$/m.test(await (await fetch(metrics)).text()),
      30_000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await (await fetch(metrics)).text()}\n${await logs(name)}`);
    });
    fake.createPod({ namespace: 'team-a', name: 'web-7f9c', images: ['nginx:1.27'] });
    await waitFor('the new pod to be logged', async () => (await logs(name)).includes('"pod":"web-7f9c"'));
    assert.match(
      await (await fetch(metrics)).text(),
      /^pod_watcher_pods_created_total\{[^}]*namespace="team-a"[^}]*\} 1$/m,
    );
    await dockerOk(['stop', '--time', '30', name]);
    assert.equal((await state(name)).ExitCode, 0, await logs(name));
  });
});
