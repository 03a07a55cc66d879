import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { REPO } from '../deploy/tools.ts';
import { IMAGES, requireImages, state, uniqueName } from './docker.ts';

/**
 * The whole stack from compose.yaml, as a developer starts it, with the images this suite built (and
 * its PostgreSQL image): migrate runs once and exits 0, api and worker become healthy, `intake doctor`
 * passes inside the API container, the API and the worker are connected to PostgreSQL as their own
 * roles and the worker has no PII key, and `intake smoke` stores a canary end to end through NATS.
 */
requireImages();
const exec = promisify(execFile);

/** `docker compose` (v2 plugin) where it exists, else Debian's docker-compose (v1). */
const COMPOSE = (() => {
  const v2 = spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' });
  return v2.status === 0 ? ['docker', 'compose'] : ['docker-compose'];
})();

test('compose: migrate exits 0, api and worker healthy, doctor passes, smoke stores a canary', async (t) => {
  const project = uniqueName('compose');
  const ports = {
    INTAKE_API_PORT: await freePort(),
    INTAKE_WORKER_PORT: await freePort(),
    GO_APP_PORT: await freePort(),
    NATS_MONITOR_PORT: await freePort(),
    POSTGRES_PORT: await freePort(),
  };
  const env = {
    ...process.env,
    INTAKE_IMAGE: IMAGES.intake,
    GO_APP_IMAGE: IMAGES.goApp,
    NATS_IMAGE_TAG: IMAGES.nats,
    POSTGRES_IMAGE: IMAGES.postgres,
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
  };
  const compose = async (args: string[], timeoutMs = 180_000) => {
    try {
      const r = await exec(
        COMPOSE[0]!,
        [...COMPOSE.slice(1), '-p', project, '-f', join(REPO, 'compose.yaml'), ...args],
        {
          cwd: REPO,
          env,
          timeout: timeoutMs,
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      return { code: 0, out: `${r.stdout}${r.stderr}` };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string; message: string };
      return {
        code: typeof e.code === 'number' ? e.code : -1,
        out: `${e.stdout ?? ''}${e.stderr ?? e.message}`,
      };
    }
  };
  t.after(async () => {
    const down = await compose(['down', '--volumes', '--remove-orphans', '--timeout', '40'], 240_000);
    if (down.code !== 0) console.log(`# compose down failed: ${down.out}`);
  });
  const started = Date.now();
  const up = await compose(['up', '--detach', '--no-build'], 300_000);
  if (up.code !== 0) assert.fail(`${up.out}\n${(await compose(['logs', '--tail', '30'])).out}`);

  const container = async (service: string) => {
    const r = await compose(['ps', '--all', '--quiet', service]);
    return r.out.trim().split('\n').filter(Boolean)[0];
  };
  const migrate = await waitFor('the migrate container', () => container('migrate'), 60_000, 500);
  await waitFor('migrate to finish', async () => (await state(migrate)).Status === 'exited', 120_000, 500);
  assert.equal((await state(migrate)).ExitCode, 0, (await compose(['logs', 'migrate'])).out);

  for (const service of ['api', 'worker']) {
    await waitFor(
      `${service} to be healthy`,
      async () => {
        const id = await container(service);
        return id && (await state(id)).Health?.Status === 'healthy';
      },
      180_000,
      1000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${(await compose(['logs', '--tail', '50', service])).out}`);
    });
  }
  t.diagnostic(`compose stack healthy after ${Date.now() - started} ms`);

  const doctor = await compose(['exec', '-T', 'api', 'node', 'dist/cli.js', 'doctor']);
  t.diagnostic(`intake doctor in the api container:\n${doctor.out}`);
  assert.equal(doctor.code, 0, doctor.out);
  assert.doesNotMatch(doctor.out, /^FAIL/m);
  assert.match(doctor.out, /^ok\s+stream\s/m, 'doctor checked the NATS stream');

  const smoke = await compose([
    'exec',
    '-T',
    'api',
    'node',
    'dist/cli.js',
    'smoke',
    '--json',
    '--key',
    'intake-dev-key-not-a-secret',
  ]);
  assert.equal(smoke.code, 0, smoke.out);
  // Its log lines (stderr) may be interleaved in `out`: the report is the line with "ok".
  const report = smoke.out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { ok?: boolean })
    .find((o) => 'ok' in o);
  assert.equal(report?.ok, true, smoke.out);

  // Least privilege: the API and the worker are connected as their roles, never as the superuser or
  // the owner; the worker holds no PII master key (compose.yaml, deploy/postgres/compose-roles.sql).
  // Right after the canary (the worker stored it, the API read it back) both hold a pooled connection.
  // The maintain service is the owner on purpose (only the owner runs the partition functions): its
  // sessions, named intake-maintain, are left out here.
  const sessions = async () => {
    const r = await compose([
      'exec',
      '-T',
      'postgres',
      'psql',
      '-U',
      'postgres',
      '-d',
      'intake',
      '-tAc',
      "SELECT coalesce(string_agg(DISTINCT usename, ',' ORDER BY usename), '') FROM pg_stat_activity WHERE datname = 'intake' AND pid <> pg_backend_pid() AND application_name <> 'intake-maintain'",
    ]);
    assert.equal(r.code, 0, r.out);
    return r.out.trim().split('\n').at(-1) ?? '';
  };
  const seen = await waitFor(
    'the API and the worker connected to PostgreSQL',
    async () => {
      const who = await sessions();
      assert.match(who, /^(intake_api|intake_worker)?(,intake_worker)?$/, `connected as: ${who}`);
      return who === 'intake_api,intake_worker' && who;
    },
    20_000,
    500,
  );
  assert.equal(seen, 'intake_api,intake_worker');
  const workerSecrets = await compose([
    'exec',
    '-T',
    'worker',
    'sh',
    '-c',
    'ls /run/secrets 2>/dev/null; env | grep -E "^INTAKE_(PII|API_KEYS)" || true',
  ]);
  assert.equal(workerSecrets.out.trim(), '', `the worker sees: ${workerSecrets.out}`);

  // And from the host, through the published port, as the README shows.
  const res = await fetch(`http://127.0.0.1:${ports.INTAKE_API_PORT}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer intake-dev-key-not-a-secret' },
    body: JSON.stringify({ ts: '1530228282', sender: 'compose', message: { a: 1 } }),
  });
  assert.equal(res.status, 202, await res.text());
  // Real clients other than Node's fetch: curl and Python's urllib, as the README's example is sent.
  const body = '{"ts":"1530228282","sender":"compose","message":{"client":"curl"}}';
  const curl = await exec('curl', [
    ...['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'content-type: application/json'],
    ...['-H', 'authorization: Bearer intake-dev-key-not-a-secret', '-d', body],
    `http://127.0.0.1:${ports.INTAKE_API_PORT}/v1/messages`,
  ]);
  assert.equal(curl.stdout, '202');
  const py = await exec('python3', [
    '-c',
    `import urllib.request as u
r = u.urlopen(u.Request("http://127.0.0.1:${ports.INTAKE_API_PORT}/v1/messages", data=b'{"ts":1530228282,"sender":"compose","message":{"client":"python"}}', headers={"content-type": "application/json", "authorization": "Bearer intake-dev-key-not-a-secret"}))
print(r.status)`,
  ]);
  assert.equal(py.stdout.trim(), '202');
  const hi = await fetch(`http://127.0.0.1:${ports.GO_APP_PORT}/?delay=10`);
  assert.equal(await hi.text(), 'Hi!\n');
});
