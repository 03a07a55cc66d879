import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';

/** Shared pieces of the NATS queue tests: processes, database checks, metrics, stream state. */

/** A temporary directory removed by the returned function. */
export function tempDir(label: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `intake-${label}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Starts `intake <command>` and registers it for stopping (by PID) in `procs`. */
export async function startRole(
  command: 'api' | 'worker' | 'start',
  env: Record<string, string>,
  procs: IntakeProcess[],
  opts: { waitReady?: boolean } = {},
): Promise<IntakeProcess> {
  const p = await startIntakeProcess(command, env, { timeoutMs: 60_000, ...opts });
  procs.push(p);
  return p;
}

export async function withDb<T>(url: string, fn: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    return await fn(db);
  } finally {
    await db.end();
  }
}

export async function storedCount(url: string): Promise<number> {
  return withDb(
    url,
    async (db) => (await db.query('SELECT count(*)::int AS n FROM intake.messages')).rows[0].n,
  );
}

/**
 * Waits until every accepted id is stored, then checks the table holds each exactly once and nothing
 * twice overall: count(*) = count(distinct id), every accepted id present.
 */
export async function assertAllStoredOnce(
  url: string,
  accepted: string[],
  timeoutMs = 60_000,
  procs: IntakeProcess[] = [],
): Promise<void> {
  await withDb(url, async (db) => {
    await waitFor(
      `all ${accepted.length} accepted messages stored`,
      async () => {
        const r = await db.query(
          'SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])',
          [accepted],
        );
        return r.rows[0].n >= new Set(accepted).size;
      },
      timeoutMs,
      200,
    ).catch(async (err) => {
      const r = await db.query<{ id: string }>(
        'SELECT id::text FROM intake.messages WHERE id = ANY($1::uuid[])',
        [accepted],
      );
      const found = new Set(r.rows.map((x) => x.id));
      const missing = accepted.filter((id) => !found.has(id));
      throw new Error(
        `${missing.length} of ${accepted.length} accepted ids never stored: ${missing.slice(0, 3)}${crashed(procs)}`,
        {
          cause: err,
        },
      );
    });
    const all = await db.query<{ n: number; d: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM intake.messages',
    );
    assert.equal(all.rows[0]!.n, all.rows[0]!.d, 'a message was stored twice');
  });
}

/** Processes that exited although nobody stopped them, with the end of their stderr. */
function crashed(procs: IntakeProcess[]): string {
  const dead = procs.filter((p) => p.child.exitCode !== null && p.child.signalCode === null);
  return dead
    .map((p) => `\n${p.child.pid} exited ${p.child.exitCode}: ${p.stderr.join('').slice(-800)}`)
    .join('');
}

/** Parses a Prometheus exposition into `name{labels}` → value. */
export async function scrape(baseUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of every series of a metric (all label values). */
export function total(m: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) sum += v;
  return sum;
}

/** Runs `fn` with a JetStream manager on a fresh connection, closed afterwards. */
export async function withJsm<T>(servers: string, fn: (jsm: JetStreamManager) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: servers.split(','), maxReconnectAttempts: 0 });
  try {
    return await fn(await jetstreamManager(nc));
  } finally {
    await nc.close();
  }
}

/** num_pending + num_ack_pending of the writer consumer, read from a fresh connection. */
export async function consumerBacklog(
  servers: string,
  stream: string,
  consumer: string,
): Promise<{ pending: number; ackPending: number; redelivered: number }> {
  return withJsm(servers, async (jsm) => {
    const ci = await jsm.consumers.info(stream, consumer);
    return { pending: ci.num_pending, ackPending: ci.num_ack_pending, redelivered: ci.num_redelivered };
  });
}

/** POST one message; status, parsed body, Retry-After and how long the answer took. */
export async function post(
  baseUrl: string,
  body: unknown,
  headers: Record<string, string> = {},
  path = '/v1/messages',
): Promise<{ status: number; json: Record<string, unknown>; retryAfter: string | null; ms: number }> {
  const started = performance.now();
  const r = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const json = (await r.json()) as Record<string, unknown>;
  return {
    status: r.status,
    json,
    retryAfter: r.headers.get('retry-after'),
    ms: performance.now() - started,
  };
}

export function message(n: number, sender = 'nats-test'): Record<string, unknown> {
  return { ts: 1530228282, sender, message: { n }, 'sent-from-ip': '10.1.2.3' };
}
