import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';

/**
 * The order a process releases what it holds is what keeps "202 means durable" true: the HTTP server
 * (and its admin listener) closes before the queue, so every request in flight has its publish
 * answered; the worker flushes its batch before the queue closes; the pool closes after the queue
 * (the Postgres queue is the pool's); the embedded PostgreSQL stops last of the resources, and tracing
 * after everything (so the spans of the steps before it are flushed). runtime.ts registers each
 * release as the resource is acquired, and a stop and a failed start unwind that one stack: the order
 * is read here from what a real `intake start` ran (its debug lines "shutdown step done"), once
 * stopped by SIGTERM and once failing to listen on a port already taken.
 */
const dirs: string[] = [];
const procs: IntakeProcess[] = [];
let taken: Server;
let takenPort: number;
before(async () => {
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  takenPort = (taken.address() as { port: number }).port;
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await new Promise((resolve) => taken.close(resolve));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `intake start` on an embedded PostgreSQL (Postgres queue) with an admin port, logging at debug. */
async function start(dataDir: string, port: number, waitReady: boolean): Promise<IntakeProcess> {
  const env = {
    INTAKE_DATA_DIR: dataDir,
    DATABASE_URL: '',
    NATS_URL: '',
    INTAKE_ADMIN_PORT: String(await freePort()),
    INTAKE_SHUTDOWN_TIMEOUT_MS: '15000',
    LOG_LEVEL: 'debug',
  };
  const p = await startIntakeProcess('start', env, { port, waitReady, timeoutMs: 60_000 });
  procs.push(p);
  return p;
}

/** The steps a shutdown ran to the end, in order, and the reason it was run for. */
function stepsRun(p: IntakeProcess): { reason: unknown; steps: string[] } {
  const reason = p.logs.find((l) => l.msg === 'shutting down')?.reason;
  const steps = p.logs.filter((l) => l.msg === 'shutdown step done').map((l) => String(l.step));
  return { reason, steps };
}

/** What must be released before what, and why. */
const BEFORE: Array<[string, string, string]> = [
  ['http server', 'queue', 'requests in flight, and their publishes, end before the queue closes'],
  ['admin listener', 'queue', 'a dead-letter replay in flight publishes too'],
  ['worker', 'queue', 'the worker flushes its batch (and acks it) before the queue closes'],
  ['queue', 'database pool', 'the Postgres queue commits through the pool'],
  ['database pool', 'embedded postgres', 'the pool closes its connections before the server stops'],
];

function assertOrder(steps: string[]): void {
  for (const [first, then, why] of BEFORE) {
    assert.ok(steps.includes(first) && steps.includes(then), `${first} and ${then} both ran: ${steps}`);
    assert.ok(steps.indexOf(first) < steps.indexOf(then), `${first} before ${then} (${why}): ${steps}`);
  }
  assert.equal(steps.at(-2), 'embedded postgres', 'the embedded PostgreSQL stops last of the resources');
  assert.equal(steps.at(-1), 'tracing', 'tracing shuts down after everything that ends spans');
}

/** The stack, last acquired first: what a stop unwinds after readiness, and what a failed start unwinds. */
const STACK = [
  'http server',
  'admin listener',
  'worker',
  'maintenance',
  'queue',
  'database pool',
  'embedded postgres',
  'tracing',
];

describe('teardown: one stack, released last in first out', () => {
  test('a stop: readiness off, the delay, then the stack', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'intake-teardown-'));
    dirs.push(dir);
    const p = await start(dir, await freePort(), true);
    p.kill('SIGTERM');
    assert.deepEqual(await p.exited, { code: 0, signal: null });
    const { reason, steps } = stepsRun(p);
    assert.equal(reason, 'SIGTERM');
    assertOrder(steps);
    assert.deepEqual(steps, ['readiness off', 'propagation delay', ...STACK]);
  });

  test('a failed start (its port is taken) unwinds the same stack', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'intake-teardown-'));
    dirs.push(dir);
    const p = await start(dir, takenPort, false);
    assert.deepEqual(await p.exited, { code: 1, signal: null });
    assert.match(p.stderr.join(''), /could not start \(HTTP server\): listen EADDRINUSE/);
    const { reason, steps } = stepsRun(p);
    assert.equal(reason, 'start failed');
    assertOrder(steps);
    assert.deepEqual(steps, STACK);
  });
});
