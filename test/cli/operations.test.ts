import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { newMessageId, uuidv7Time } from '../../src/contract/message-id.ts';
import type { QueuedMessage } from '../../src/contract/queued-message.ts';
import { insertDeadLetters } from '../../src/store/dead-letters.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { INTAKE_BIN as BIN, runIntake } from '../helpers/cli.ts';

/**
 * Issue 16: what the state-changing commands say and do (--dry-run changes nothing, the real operation
 * still works), the flags that mirror settings, smoke's and doctor's output, and `intake dead-letters`
 * (issue 11). Each runs node bin/intake.js as a subprocess against a running intake's database.
 */

let app: TestApp;
let db: pg.Client;
let env: NodeJS.ProcessEnv;

function intake(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return intakeWith(env, ...args);
}

function intakeWith(
  env: NodeJS.ProcessEnv,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runIntake(env, args);
}

const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n;

before(async () => {
  app = await startTestApp('cli_ops');
  db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
  env = {
    ...process.env,
    DATABASE_URL: app.db.url,
    INTAKE_DATA_DIR: app.dataDir, // the running service's master key
    INTAKE_ACTOR: 'ops',
    LOG_LEVEL: 'silent',
  };
});
after(async () => {
  await db.end();
  await app.close();
});

describe('state-changing commands say what they do; --dry-run changes nothing', () => {
  test('keys rotate --dry-run, then keys rotate', async () => {
    const keys = 'SELECT count(*)::int AS n FROM intake.data_keys';
    const audit = 'SELECT count(*)::int AS n FROM intake.audit_log';
    const [k0, a0] = [await count(keys), await count(audit)];
    const active = (
      await db.query('SELECT id FROM intake.data_keys ORDER BY created_at DESC, id DESC LIMIT 1')
    ).rows[0].id;

    const dry = await intake('keys', 'rotate', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(
      dry.stderr,
      `dry run: would start a new PII data key (the active one is ${active}); nothing changed\n`,
    );
    assert.deepEqual(JSON.parse(dry.stdout), { dry_run: true, active });
    assert.deepEqual([await count(keys), await count(audit)], [k0, a0], 'no key, no audit row');

    const real = await intake('keys', 'rotate');
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stderr, /^Start a new PII data key \(the active one is dk-/);
    const { rotated } = JSON.parse(real.stdout);
    assert.match(rotated, /^dk-/);
    assert.equal(await count(keys), k0 + 1);
    const last = await db.query('SELECT actor, action FROM intake.audit_log ORDER BY id DESC LIMIT 1');
    assert.deepEqual(last.rows[0], { actor: 'cli:ops', action: 'rotate-key' });
  });

  test('pii erase --dry-run counts and keeps; pii erase deletes', async () => {
    const res = await app.post('/v1/messages', {
      ts: 1,
      sender: 'cli',
      message: { a: 1 },
      'sent-from-ip': '198.51.100.9',
    });
    const { id } = (await res.json()) as { id: string };
    await waitFor('stored', async () => (await fetch(`${app.url}/v1/messages/${id}`)).status === 200);

    const dry = await intake('pii', 'erase', '198.51.100.9', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(
      dry.stderr,
      'dry run: would erase everything held about 198.51.100.9: 1 stored messages, 0 dead letters, 0 queued; nothing changed\n',
    );
    assert.deepEqual(JSON.parse(dry.stdout), {
      dry_run: true,
      would_erase: { messages: 1, dead_letters: 0, queued: 0 },
    });
    assert.equal((await fetch(`${app.url}/v1/messages/${id}`)).status, 200, 'still stored');

    const real = await intake('pii', 'erase', '198.51.100.9');
    assert.equal(real.code, 0, real.stderr);
    assert.deepEqual(JSON.parse(real.stdout).erased, {
      messages: 1,
      dead_letters: 0,
      queued: 0,
      idempotency_keys: 0,
    });
    assert.equal((await fetch(`${app.url}/v1/messages/${id}`)).status, 404);
  });

  test('dead-letters list, replay and discard (with --dry-run), audited as the operator', async () => {
    const letter = (n: number): QueuedMessage => {
      const id = newMessageId();
      return {
        v: 1,
        id,
        received_at: uuidv7Time(id).toISOString(),
        ts: n,
        sender: 'dl',
        message: { n },
        priority: null,
      };
    };
    const [a, b] = [letter(1), letter(2)];
    await insertDeadLetters(db, [
      { message: a, reason: 'test: first', attempts: 5 },
      { message: b, reason: 'test: second', attempts: 5 },
    ]);
    const dead = 'SELECT count(*)::int AS n FROM intake.dead_letters';

    const list = await intake('dead-letters', 'list', '--json');
    assert.equal(list.code, 0, list.stderr);
    const rows = list.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(rows.map((r) => r.id).sort(), [a.id, b.id].sort());
    assert.equal(rows[0].attempts, 5);
    const filtered = await intake('dead-letters', 'list', '--reason', 'SECOND', '--json');
    assert.deepEqual(
      filtered.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).id),
      [b.id],
    );

    const shown = await intake('dead-letters', 'show', b.id);
    assert.equal(shown.code, 0, shown.stderr);
    const view = JSON.parse(shown.stdout);
    assert.deepEqual(
      [view.id, view.reason, view.attempts, view.message],
      [b.id, 'test: second', 5, { n: 2 }],
    );
    const unknown = await intake('dead-letters', 'show', newMessageId());
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr,
      /^intake dead-letters show: no dead letter [0-9a-f-]{36} \(replayed or discarded already\?\)/,
    );

    const dry = await intake('dead-letters', 'replay', a.id, '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, new RegExp(`^dry run: would replay 1 dead letters: ${a.id}; nothing changed`));
    assert.equal(await count(dead), 2);

    const replay = await intake('dead-letters', 'replay', a.id);
    assert.equal(replay.code, 0, replay.stderr);
    assert.deepEqual(JSON.parse(replay.stdout), { replayed: [a.id] });
    await waitFor(
      'replayed message stored',
      async () => (await fetch(`${app.url}/v1/messages/${a.id}`)).status === 200,
    );

    const again = await intake('dead-letters', 'replay', a.id);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no dead letter .* \(replayed or discarded already\?\)/);

    const dryAll = await intake('dead-letters', 'discard', '--all', '--dry-run');
    assert.equal(dryAll.code, 0, dryAll.stderr);
    assert.deepEqual(JSON.parse(dryAll.stdout), { dry_run: true, would_discard: [b.id] });
    assert.equal(await count(dead), 1);
    const discard = await intake('dead-letters', 'discard', '--all');
    assert.deepEqual(JSON.parse(discard.stdout), { discarded: [b.id] });
    assert.equal(await count(dead), 0);

    const audit = await db.query(
      "SELECT actor, action FROM intake.audit_log WHERE action LIKE '%dead-letter' ORDER BY id",
    );
    assert.deepEqual(
      audit.rows.map((r) => `${r.actor} ${r.action}`),
      ['cli:ops replay-dead-letter', 'cli:ops discard-dead-letter'],
    );
  });
});

describe('settings, smoke and doctor', () => {
  test('--port and --host override PORT and HOST', async () => {
    const [flagPort, envPort] = [await freePort(), await freePort()];
    const child = spawn(
      process.execPath,
      [BIN, 'worker', '--port', String(flagPort), '--host', '127.0.0.1'],
      {
        env: { ...env, PORT: String(envPort), HOST: '0.0.0.0' },
        stdio: 'ignore',
      },
    );
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await waitFor(
        'worker listening on --port',
        async () => (await fetch(`http://127.0.0.1:${flagPort}/livez`)).ok,
        30_000,
      );
      await assert.rejects(fetch(`http://127.0.0.1:${envPort}/livez`), 'nothing on PORT');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
  });

  test('smoke: text by default, JSON with --json, intake words for a closed port', async () => {
    const ok = await intake('smoke', '--url', app.url);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ok {2}canary [0-9a-f-]{36} accepted in \d+ ms, stored in \d+ ms/);

    const closed = await freePort();
    const refused = await intake('smoke', '--url', `http://127.0.0.1:${closed}`);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      `intake smoke: cannot connect to http://127.0.0.1:${closed}: connection refused — is intake running? pass --url\n`,
    );
    // The default is the setting: INTAKE_SMOKE_URL, else PORT.
    const saved = env;
    env = { ...env, PORT: String(closed) };
    const byPort = await intake('smoke', '--json');
    env = saved;
    assert.equal(byPort.code, 1);
    assert.deepEqual(JSON.parse(byPort.stdout), {
      url: `http://127.0.0.1:${closed}`,
      ok: false,
      error: `cannot connect to http://127.0.0.1:${closed}: connection refused — is intake running? pass --url`,
    });
    const unknownHost = await intake('smoke', '--url', 'http://intake.invalid:8080');
    assert.equal(unknownHost.code, 1);
    assert.match(
      unknownHost.stderr,
      /cannot connect to http:\/\/intake\.invalid:8080: host intake\.invalid not found/,
    );
  });

  test("one-shot commands log to stderr: doctor --json's stdout is only its report, whatever the log level", async () => {
    // Without DATABASE_URL doctor starts the embedded PostgreSQL, which logs at info and debug.
    const { DATABASE_URL: _, ...embedded } = env;
    const r = await intakeWith({ ...embedded, LOG_LEVEL: 'debug' }, 'doctor', '--json');
    assert.ok(r.stdout.trim().startsWith('{'), r.stdout.slice(0, 200));
    const report = JSON.parse(r.stdout) as { checks: unknown[] };
    assert.ok(report.checks.length > 3);
    const logLines = r.stderr.split('\n').filter((l) => l.startsWith('{"level"'));
    assert.ok(logLines.length > 0, `the log lines went to stderr: ${r.stderr.slice(0, 300)}`);
  });

  test('doctor is read-only: with no master key it warns instead of generating one', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'intake-doctor-'));
    try {
      const r = await intakeWith({ ...env, INTAKE_DATA_DIR: fresh }, 'doctor', '--json');
      const report = JSON.parse(r.stdout) as {
        checks: Array<{ name: string; status: string; detail: string }>;
      };
      const pii = report.checks.find((c) => c.name === 'pii keys')!;
      assert.equal(pii.status, 'warn');
      assert.match(pii.detail, /no development key yet .*intake start generates one/);
      assert.deepEqual(readdirSync(fresh), [], 'doctor wrote nothing into the data directory');
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  test('doctor --json is parseable and says the same as the text', async () => {
    const json = await intake('doctor', '--json');
    assert.equal(json.code, 0, json.stdout + json.stderr);
    const report = JSON.parse(json.stdout) as {
      ok: boolean;
      checks: Array<{ name: string; status: string }>;
    };
    assert.equal(report.ok, true);
    const names = report.checks.map((c) => c.name);
    for (const name of ['config', 'database', 'migrations', 'partitions', 'pii keys'])
      assert.ok(names.includes(name), name);
    assert.equal(report.checks.find((c) => c.name === 'migrations')!.status, 'ok');
    const text = await intake('doctor');
    assert.equal(text.code, 0);
    for (const c of report.checks) assert.match(text.stdout, new RegExp(`^(ok|WARN|FAIL)\\s+${c.name}`, 'm'));
  });
});
