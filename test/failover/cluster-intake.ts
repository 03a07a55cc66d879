import type { TestContext } from 'node:test';
import { quietLog } from '../../harness/db.ts';
import { type PgCluster, pgBinDir, query } from '../../harness/pg-cluster.ts';
import { decodeEnvelope } from '../../src/queue/nats/envelope.ts';
import { migrate } from '../../src/store/migrate.ts';
import { withJsm } from '../helpers/nats-roles.ts';

/** Shared pieces of the tests that run intake on a replicated PostgreSQL (harness/pg-cluster.ts). */

/**
 * Skips the test (with the reason printed) when PostgreSQL's server binaries are missing; under
 * CI=true that is a failure instead, so CI can never go green by skipping.
 */
export function skipWithoutPgBinaries(t: TestContext): boolean {
  if (pgBinDir()) return false;
  const reason = 'PostgreSQL server binaries (initdb, pg_basebackup) not found; set PG_BIN_DIR';
  if (process.env.CI === 'true') throw new Error(`${reason}: CI must provide them`);
  t.skip(reason);
  return true;
}

/** Creates database `intake` on the cluster (through the proxy) and migrates it. Returns its URL. */
export async function createIntakeDatabase(cluster: PgCluster): Promise<string> {
  await query(cluster.url(), 'CREATE DATABASE intake');
  const url = cluster.url('intake');
  await migrate(url, quietLog);
  return url;
}

/** POST one message with a client-side limit, so a request intake never answers fails the test. */
export async function post(
  baseUrl: string,
  body: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const started = performance.now();
  const r = await fetch(`${baseUrl}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const json = (await r.json()) as Record<string, unknown>;
  return { status: r.status, json, ms: performance.now() - started };
}

/** How many times each id is in intake.messages (ids never stored are absent). */
export async function storedTimes(url: string, ids: string[]): Promise<Map<string, number>> {
  const rows = await query<{ id: string; n: number }>(
    url,
    'SELECT id::text, count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[]) GROUP BY id',
    [ids],
  );
  return new Map(rows.map((r) => [r.id, r.n]));
}

/** Backends of an application waiting for a synchronous standby (wait event SyncRep). */
export async function waitingForStandby(url: string, application: string): Promise<number> {
  const r = await query<{ n: number }>(
    url,
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE application_name = $1 AND wait_event = 'SyncRep'`,
    [application],
  );
  return r[0]!.n;
}

/** The writer consumer's acknowledgement state and the stream's last sequence. */
export async function ackState(
  servers: string,
  stream: string,
  consumer: string,
): Promise<{ ackFloor: number; ackPending: number; pending: number; redelivered: number; last: number }> {
  return withJsm(servers, async (jsm) => {
    const [ci, si] = await Promise.all([jsm.consumers.info(stream, consumer), jsm.streams.info(stream)]);
    return {
      ackFloor: ci.ack_floor.stream_seq,
      ackPending: ci.num_ack_pending,
      pending: ci.num_pending,
      redelivered: ci.num_redelivered,
      last: si.state.last_seq,
    };
  });
}

/** The message ids in the stream's envelopes with sequence numbers from..to (both included). */
export async function idsInStream(
  servers: string,
  stream: string,
  from: number,
  to: number,
): Promise<string[]> {
  if (to < from) return [];
  return withJsm(servers, async (jsm) => {
    const ids: string[] = [];
    for (let seq = from; seq <= to; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (m) for (const q of decodeEnvelope(m.data).messages) ids.push(q.id);
    }
    return ids;
  });
}
