import assert from 'node:assert/strict';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { embeddedUrl as socketUrl } from '../../src/store/embedded-postgres.ts';

/** The URL of the embedded PostgreSQL an `intake start` process logged (its socket, never the system one). */
export function embeddedUrl(p: IntakeProcess): string {
  const line = p.logs.find((l) => l.msg === 'embedded PostgreSQL started');
  assert.ok(line, 'the embedded PostgreSQL logged its socket');
  return socketUrl(String(line.socketDir), Number(line.port));
}

/**
 * After a restart: the queue drains, then every accepted id is present exactly once. A batch a killed
 * worker had leased comes back only when its lease (30 s) expires: `drainMs` leaves room for that.
 */
export async function assertAllStoredOnce(
  p: IntakeProcess,
  accepted: string[],
  opts: { drainMs?: number } = {},
): Promise<void> {
  const db = new pg.Client({ connectionString: embeddedUrl(p) });
  await db.connect();
  try {
    await waitFor(
      'queue drained',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
      opts.drainMs ?? 30_000,
    );
    const r = await db.query<{ id: string; n: number }>(
      'SELECT id::text, count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[]) GROUP BY id',
      [accepted],
    );
    const found = new Map(r.rows.map((x) => [x.id, x.n]));
    const missing = accepted.filter((id) => !found.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${accepted.length} accepted messages were lost`);
    assert.ok(
      [...found.values()].every((n) => n === 1),
      'no message stored twice',
    );
    const dup = await db.query('SELECT count(*)::int - count(DISTINCT id)::int AS d FROM intake.messages');
    assert.equal(dup.rows[0].d, 0);
  } finally {
    await db.end();
  }
}
