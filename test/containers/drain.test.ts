import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { startLoad } from '../helpers/load.ts';
import { docker, intakeArgs, logs, requireImages, runDetached, state, waitHttp } from './docker.ts';

/**
 * `docker stop` on a busy API container, configured as compose runs it: readiness turns 503 at once,
 * the container keeps serving for INTAKE_SHUTDOWN_DELAY_MS while a balancer stops sending, finishes
 * what is in flight (including slow clients still sending their body), and exits 0 well inside the
 * grace period. Every request sent while the container was in the balancer gets its 202, and every
 * 202 is durable: its id is in the (Postgres) queue afterwards.
 */
requireImages();

const GRACE_S = 35; // compose.yaml stop_grace_period
const MESSAGE = JSON.stringify({ ts: 1530228282, sender: 'drain', message: { slow: true } });

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('ct_drain');
});
after(() => db.drop());

/** A POST whose body arrives in two halves; the second half is sent when `finish()` is called. */
function slowPost(url: string, headers: Record<string, string>) {
  const u = new URL(`${url}/v1/messages`);
  let finish = () => {};
  const done = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent: false,
        headers: { ...headers, 'content-length': Buffer.byteLength(MESSAGE) },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.write(MESSAGE.slice(0, 20));
    finish = () => req.end(MESSAGE.slice(20));
  });
  return { done, finish: () => finish() };
}

test('docker stop on a busy API container: drains inside the grace period, 0 failed requests', async (t) => {
  const port = await freePort();
  const { key, args } = intakeArgs('api', {
    DATABASE_URL: db.url,
    PORT: String(port),
    INTAKE_SHUTDOWN_DELAY_MS: '2000', // as compose.yaml: no preStop hook outside Kubernetes
  });
  const name = await runDetached(t, 'drain', args);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(name, `${url}/readyz`);

  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const load = startLoad(url, { concurrency: 16, maxRequests: 200_000, sender: 'drain', headers });
  await waitFor('300 accepted messages under load', () => load.result.accepted.length >= 300, 60_000);
  const slow = [1, 2, 3].map(() => slowPost(url, headers));
  await new Promise((r) => setTimeout(r, 100)); // let the slow requests reach the server

  const stopAt = Date.now();
  const sentAtStop = load.result.sent;
  const stopping = docker(['stop', '--time', String(GRACE_S), name], { timeoutMs: (GRACE_S + 15) * 1000 });
  // The balancer: it sends while /readyz answers 200, as a readiness probe every 50 ms would decide.
  await waitFor(
    'readiness to turn false',
    async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.status !== 200,
    10_000,
    50,
  );
  const readinessOffMs = Date.now() - stopAt;
  const result = await load.stop();
  setTimeout(() => {
    for (const s of slow) s.finish();
  }, 1000);
  const slowResults = await Promise.all(slow.map((s) => s.done));
  const stopped = await stopping;
  const stopMs = Date.now() - stopAt;
  const s = await state(name);

  const accepted = [
    ...result.accepted,
    ...slowResults.filter((r) => r.status === 202).map((r) => JSON.parse(r.body).id),
  ];
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  const queued = await c
    .query<{ n: number }>('SELECT count(*)::int AS n FROM intake.queue WHERE id = ANY($1::uuid[])', [
      accepted,
    ])
    .finally(() => c.end());

  const report = {
    sent: result.sent + slow.length,
    accepted: accepted.length,
    failed:
      result.networkErrors + [...result.statuses].filter(([st]) => st !== 202).reduce((a, [, n]) => a + n, 0),
    statuses: Object.fromEntries(result.statuses),
    sentAfterStop: result.sent - sentAtStop,
    slowClientsInFlight: slow.length,
    readinessOffMs,
    stopMs,
    exitCode: s.ExitCode,
  };
  t.diagnostic(`drain: ${JSON.stringify(report)}`);
  console.log(`# drain figures: ${JSON.stringify(report)}`);

  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal(s.ExitCode, 0, await logs(name));
  assert.equal(s.OOMKilled, false);
  assert.ok(stopMs < GRACE_S * 1000, `docker stop took ${stopMs} ms, the grace period is ${GRACE_S} s`);
  assert.equal(report.failed, 0, `failed requests: ${JSON.stringify(report)}`);
  assert.deepEqual(
    slowResults.map((r) => r.status),
    [202, 202, 202],
    'slow clients in flight at docker stop get their 202',
  );
  assert.ok(report.sentAfterStop > 0, 'the load kept going after docker stop (the drain was exercised)');
  assert.equal(queued.rows[0]!.n, accepted.length, 'every 202 is in the queue');
});
