import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { spawnWithPipes } from '../helpers/controlled-pipe.ts';

/**
 * Issue 22 item 4: a start that fails undoes what it started, in reverse order, and the process exits by
 * itself with one line on stderr and exit code 1; that line comes last (stdout and stderr share one pipe
 * here, so their order is the order written), no log line is at error level (a worker left running after
 * the pool closed logged "Cannot use a pool after calling end on the pool"), and nothing is left running:
 * no process mentions the data directory and the embedded PostgreSQL's port refuses connections.
 */
const INTAKE = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
/** Start (embedded PostgreSQL included) plus the undo, on a busy 2-core machine. */
const EXITS_WITHIN_MS = 45_000;

const dirs: string[] = [];
let taken: Server;
let takenPort: number;
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('failed_start');
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  takenPort = (taken.address() as { port: number }).port;
});
after(async () => {
  await new Promise((resolve) => taken.close(resolve));
  await db?.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'intake-failed-start-'));
  dirs.push(d);
  return d;
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr, interleaved as written. */
  lines: string[];
  logs: Array<Record<string, unknown>>;
  /** Lines that are not JSON log lines. */
  plain: string[];
}

/** Runs `intake start` until it exits by itself (or kills it by its PID after EXITS_WITHIN_MS). */
async function runStart(env: Record<string, string>): Promise<Outcome> {
  const p = spawnWithPipes(
    [INTAKE, 'start'],
    {
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(takenPort),
      INTAKE_SHUTDOWN_TIMEOUT_MS: '15000',
      ...env,
    },
    { errToOut: true },
  );
  const exit = await p.exitWithin(EXITS_WITHIN_MS);
  const text = p.out.text();
  await p.dispose();
  assert.ok(exit, `still running ${EXITS_WITHIN_MS} ms after start: ${text.slice(-2000)}`);
  const lines = text.split('\n').filter((l) => l !== '');
  const logs: Array<Record<string, unknown>> = [];
  const plain: string[] = [];
  for (const l of lines) {
    try {
      logs.push(JSON.parse(l));
    } catch {
      plain.push(l);
    }
  }
  return { ...exit, lines, logs, plain };
}

/** Exit 1 by itself; one plain line, the last one, matching `line`; no log line at error level. */
function assertOneLineLast(o: Outcome, line: RegExp): void {
  const all = o.lines.join('\n');
  assert.deepEqual({ code: o.code, signal: o.signal }, { code: 1, signal: null }, all);
  const errors = o.logs.filter((l) => l.level === 'error' || l.level === 'fatal');
  assert.deepEqual(errors, [], 'no log line at error level');
  assert.equal(o.plain.length, 1, `exactly one line that is not a log line:\n${all}`);
  assert.equal(o.lines.at(-1), o.plain[0], `nothing written after the line:\n${all}`);
  assert.match(o.plain[0]!, line);
}

/** No process names the data directory, and the embedded PostgreSQL's socket is gone. */
async function assertNothingLeft(o: Outcome, dir: string): Promise<void> {
  const started = o.logs.find((l) => l.msg === 'embedded PostgreSQL started');
  assert.ok(started, 'the embedded PostgreSQL was started');
  assert.ok(
    o.logs.some((l) => l.msg === 'embedded PostgreSQL stopped'),
    'and stopped',
  );
  assert.equal(existsSync(join(dir, 'pg', 'postmaster.pid')), false, 'no postmaster.pid left');
  const socket = join(String(started.socketDir), `.s.PGSQL.${started.port}`);
  assert.equal(existsSync(socket), false, `no socket left at ${socket}`);
  const left = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
      } catch {
        return false; // gone meanwhile
      }
    });
  assert.deepEqual(left, [], 'no process left that uses the data directory');
}

describe('a start that fails undoes what it started and exits with one line', () => {
  test('intake start (embedded PostgreSQL, Postgres queue) on a port already taken', async () => {
    const dir = dataDir();
    const o = await runStart({ INTAKE_DATA_DIR: dir, DATABASE_URL: '', NATS_URL: '' });
    assertOneLineLast(
      o,
      new RegExp(
        `^intake: could not start \\(HTTP server\\): listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${takenPort}$`,
      ),
    );
    await assertNothingLeft(o, dir);
  });

  test('intake start with NATS down (the worker waiting for it) on a port already taken', async () => {
    const dir = dataDir();
    const natsPort = await freePort(); // nothing listens there
    const o = await runStart({
      INTAKE_DATA_DIR: dir,
      DATABASE_URL: '',
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
    });
    assertOneLineLast(o, /^intake: could not start \(HTTP server\): listen EADDRINUSE/);
    await assertNothingLeft(o, dir);
  });

  test('intake start with the database down', async () => {
    const dbPort = await freePort(); // nothing listens there
    const o = await runStart({
      INTAKE_DATA_DIR: dataDir(),
      DATABASE_URL: `postgres://postgres@127.0.0.1:${dbPort}/intake`,
      NATS_URL: '',
    });
    assertOneLineLast(
      o,
      new RegExp(
        `^intake: could not start \\(database migrations\\): connect ECONNREFUSED 127\\.0\\.0\\.1:${dbPort}$`,
      ),
    );
  });

  test('intake start whose database exists but is not migrated (INTAKE_MIGRATE_ON_START=false)', async () => {
    // The pool and the schema check run, the check refuses: the pool is closed, nothing else started.
    const empty = await createTestDatabase('failed_start_empty', { migrate: false });
    try {
      const o = await runStart({
        INTAKE_DATA_DIR: dataDir(),
        DATABASE_URL: empty.url,
        NATS_URL: '',
        INTAKE_MIGRATE_ON_START: 'false',
      });
      assertOneLineLast(o, /^intake: could not start \(database schema check\): .*intake migrate/);
    } finally {
      await empty.drop();
    }
  });
});
