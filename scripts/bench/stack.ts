import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';

export type QueueKind = 'pg' | 'nats';

/**
 * One intake deployment for the bench: a fresh database (and, for NATS, a private nats-server on free
 * ports, so its PID is known), `api` and `worker` as separate processes as in Kubernetes.
 *
 * The bench database gets one extra column, `bench_stored_at DEFAULT clock_timestamp()`, so every row
 * carries the time it was written: queue→stored lag is bench_stored_at − received_at (the id's time,
 * set when the API accepted the message).
 */
export class Stack {
  api: IntakeProcess | undefined;
  worker: IntakeProcess | undefined;
  apiReadyMs = Number.NaN;
  workerReadyMs = Number.NaN;
  /** The bench's own connection; its backend is excluded from PostgreSQL's CPU by application_name. */
  readonly sql: pg.Pool;

  private constructor(
    readonly kind: QueueKind,
    readonly db: TestDatabase,
    readonly nats: NatsServer | undefined,
    private readonly env: Record<string, string>,
    private readonly dir: string,
  ) {
    this.sql = new pg.Pool({ connectionString: db.url, max: 1, application_name: 'bench' });
  }

  static async create(kind: QueueKind, extraEnv: Record<string, string> = {}): Promise<Stack> {
    const db = await createTestDatabase(`bench_${kind}`);
    const nats = kind === 'nats' ? await startNatsServer() : undefined;
    const dir = mkdtempSync(join(tmpdir(), 'intake-bench-'));
    const env: Record<string, string> = {
      DATABASE_URL: db.url,
      INTAKE_DATA_DIR: dir,
      LOG_LEVEL: 'warn',
      ...(nats ? natsEnv(nats, uniqueStream('bench')) : {}),
      ...extraEnv,
    };
    const s = new Stack(kind, db, nats, env, dir);
    await s.sql.query(
      'ALTER TABLE intake.messages ADD COLUMN bench_stored_at timestamptz DEFAULT clock_timestamp()',
    );
    return s;
  }

  get natsPid(): number | undefined {
    return this.nats?.nodes[0]?.child?.pid;
  }

  async startApi(): Promise<void> {
    const t0 = performance.now();
    this.api = await startIntakeProcess('api', this.env, { timeoutMs: 60_000 });
    this.apiReadyMs = performance.now() - t0;
  }

  async startWorker(): Promise<void> {
    const t0 = performance.now();
    this.worker = await startIntakeProcess('worker', this.env, { timeoutMs: 60_000 });
    this.workerReadyMs = performance.now() - t0;
  }

  /** Rows in intake.messages: exact, but a full scan, so called once a phase is over, never in a loop. */
  async stored(): Promise<number> {
    const r = await this.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM intake.messages');
    return r.rows[0]!.n;
  }

  /**
   * Messages the running worker has stored since it started, from its own counter
   * (intake_messages_stored_total on its /metrics). Cheap to poll, unlike count(*) over a table of a
   * million rows, which the bench used to run every 100 ms while it waited: that scan took a core of
   * the two the pipeline shares, slowed the worker it was timing and was charged to PostgreSQL's CPU.
   */
  async workerStored(): Promise<number> {
    const text = await (await fetch(`${this.worker!.url}/metrics`)).text();
    const m = /^intake_messages_stored_total (\d+)/m.exec(text);
    if (!m) throw new Error('worker /metrics has no intake_messages_stored_total');
    return Number(m[1]);
  }

  /**
   * Waits until the worker's counter reaches `n` and then stays still for one poll (autocannon counts
   * no answer that arrives after its duration, yet those messages were accepted and get stored too),
   * polling every 250 ms (the metrics page costs the worker a fraction of a millisecond); then checks the
   * table holds at least `rows` rows.
   */
  async waitStored(n: number, rows: number, timeoutMs = 180_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    for (;;) {
      const have = await this.workerStored();
      if (have >= n && have === last) break;
      last = have;
      if (Date.now() > deadline)
        throw new Error(`${this.kind}: the worker stored only ${have} of ${n} messages`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const counted = await this.stored();
    if (counted < rows) throw new Error(`${this.kind}: ${counted} rows stored, expected at least ${rows}`);
  }

  /**
   * The rows written at or after `since` (bench_stored_at, per row), and their write rate: rows after
   * the first transaction over the time from its first row to the last row, so the drain's rate comes
   * from the rows themselves with no polling during it.
   */
  async writtenSince(since: Date): Promise<{ rows: number; rowsPerSec: number }> {
    const r = await this.sql.query<{ rows: number; first_tx: number; seconds: number }>(
      `WITH w AS (SELECT xmin::text AS tx, bench_stored_at AS t FROM intake.messages WHERE bench_stored_at >= $1)
       SELECT count(*)::int AS rows,
              count(*) FILTER (WHERE tx = (SELECT tx FROM w ORDER BY t LIMIT 1))::int AS first_tx,
              extract(epoch FROM max(t) - min(t))::float8 AS seconds
       FROM w`,
      [since],
    );
    const { rows, first_tx, seconds } = r.rows[0]!;
    return { rows, rowsPerSec: (rows - first_tx) / seconds };
  }

  /** PostgreSQL's clock (the one bench_stored_at is written with). */
  async dbNow(): Promise<Date> {
    return (await this.sql.query<{ now: Date }>('SELECT clock_timestamp() AS now')).rows[0]!.now;
  }

  /** Queue→stored lag percentiles (ms) of the rows received in [from, to). */
  async lag(from: Date, to: Date): Promise<{ p50: number; p99: number }> {
    const r = await this.sql.query<{ p50: number; p99: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY l) AS p99
       FROM (SELECT extract(epoch FROM bench_stored_at - received_at) * 1000 AS l
             FROM intake.messages WHERE received_at >= $1 AND received_at < $2) x`,
      [from, to],
    );
    return { p50: Number(r.rows[0]!.p50), p99: Number(r.rows[0]!.p99) };
  }

  async stop(): Promise<void> {
    await this.api?.stop();
    await this.worker?.stop();
    await this.sql.end();
    await this.nats?.stop();
    await this.db.drop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
