import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { startRole, tempDir } from '../helpers/nats-roles.ts';

/**
 * Data and master key rotation, with real `intake` processes: `intake keys rotate` takes effect in a
 * running API within INTAKE_DATA_KEY_REFRESH_SECONDS; a process never makes more than
 * INTAKE_DATA_KEY_MAX_ENCRYPTIONS encryptions under one key (AES-GCM random IVs, NIST SP 800-38D);
 * `intake keys rotate-master` moves every stored key to a new master key while old and new messages
 * stay revealable and erasure by IP still finds the old rows.
 */
const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

function intake(env: Record<string, string>, ...args: string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, LOG_LEVEL: 'silent', INTAKE_ACTOR: 'keyops', ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

async function post(url: string, ip: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ts: 1, sender: 'rot', message: { a: 1, ...extra }, 'sent-from-ip': ip }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

const procs: IntakeProcess[] = [];
const clients: pg.Client[] = [];
const dbs: TestDatabase[] = [];
const dirs: Array<{ remove: () => void }> = [];
after(async () => {
  for (const p of procs) await p.stop(5000);
  for (const c of clients) await c.end();
  for (const d of dbs) await d.drop();
  for (const d of dirs) d.remove();
});

async function freshDb(label: string): Promise<{ db: TestDatabase; client: pg.Client; dir: string }> {
  const db = await createTestDatabase(label);
  dbs.push(db);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  clients.push(client);
  const dir = tempDir(label);
  dirs.push(dir);
  return { db, client, dir: dir.path };
}

describe('intake keys rotate reaches a running API within INTAKE_DATA_KEY_REFRESH_SECONDS', () => {
  test('new messages are encrypted under the new key id within the bound', async () => {
    const { db, client, dir } = await freshDb('keyrot_bound');
    const REFRESH_S = 2;
    const env = {
      DATABASE_URL: db.url,
      INTAKE_DATA_DIR: dir,
      INTAKE_DATA_KEY_REFRESH_SECONDS: String(REFRESH_S),
    };
    const api = await startRole('start', env, procs);
    const keyOf = (id: string) =>
      waitFor(`${id} stored`, async () => {
        const r = await client.query('SELECT ip_key_id FROM intake.messages WHERE id = $1', [id]);
        return r.rows[0]?.ip_key_id as string | undefined;
      });
    const before = await keyOf(await post(api.url, '192.0.2.1'));

    const rot = await intake(env, 'keys', 'rotate');
    assert.equal(rot.code, 0, rot.stderr);
    const { rotated, in_use_within_seconds } = JSON.parse(rot.stdout);
    assert.notEqual(rotated, before);
    assert.equal(in_use_within_seconds, REFRESH_S);
    const createdAt = (
      await client.query('SELECT created_at FROM intake.data_keys WHERE id = $1', [rotated])
    ).rows[0].created_at.getTime() as number;

    // One message every 100 ms until well past the bound; each remembers when it was sent.
    const BOUND_MS = REFRESH_S * 1000;
    const SLACK_MS = 1500; // the refresh query itself and timer lateness on a loaded machine
    const sent: Array<{ at: number; id: string }> = [];
    while (Date.now() < createdAt + BOUND_MS + SLACK_MS + 1000) {
      sent.push({ at: Date.now(), id: await post(api.url, '192.0.2.2') });
      await new Promise((r) => setTimeout(r, 100));
    }
    const keys = await Promise.all(sent.map((s) => keyOf(s.id)));
    const first = sent.find((_, i) => keys[i] === rotated);
    assert.ok(first, `no message was encrypted under ${rotated}: ${[...new Set(keys)]}`);
    assert.ok(
      first.at - createdAt <= BOUND_MS + SLACK_MS,
      `the new key was first used ${first.at - createdAt} ms after it was made`,
    );
    const late = sent.filter((s, i) => s.at >= createdAt + BOUND_MS + SLACK_MS && keys[i] !== rotated);
    assert.deepEqual(late, [], 'messages sent after the bound were still encrypted under the old key');
  });
});

describe('no process makes more than INTAKE_DATA_KEY_MAX_ENCRYPTIONS encryptions under one key', () => {
  let app: TestApp;
  let client: pg.Client;
  const MAX = 64;
  before(async () => {
    app = await startTestApp('keybudget', {
      env: { INTAKE_DATA_KEY_MAX_ENCRYPTIONS: String(MAX), INTAKE_PII_MESSAGE_FIELDS: 'email' },
    });
    client = new pg.Client({ connectionString: app.db.url });
    await client.connect();
  });
  after(async () => {
    await client.end();
    await app.close();
  });

  test('IP and PII field encryptions are counted; keys turn over before the bound', async () => {
    const ids: string[] = [];
    // Concurrent single requests and batches larger than one key's budget (2 encryptions per message).
    const singles = Array.from({ length: 60 }, (_, i) =>
      post(app.url, `10.0.${i}.1`, { email: `u${i}@x.org` }),
    );
    for (let b = 0; b < 3; b++) {
      const messages = Array.from({ length: 50 }, (_, i) => ({
        ts: 1,
        sender: 'rot',
        message: { email: `b${b}-${i}@x.org` },
        'sent-from-ip': `10.1.${b}.${i}`,
      }));
      const res = await app.post('/v1/messages/batch', { messages });
      assert.equal(res.status, 202);
      ids.push(...((await res.json()) as { items: Array<{ id: string }> }).items.map((x) => x.id));
    }
    ids.push(...(await Promise.all(singles)));
    await waitFor(
      'all stored',
      async () =>
        (
          await client.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])', [
            ids,
          ])
        ).rows[0].n === ids.length,
    );
    // Every ciphertext this process made: the IP's and the email's, counted by the key they are under.
    const r = await client.query<{ key: string; n: number }>(
      `SELECT key, count(*)::int AS n FROM (
         SELECT ip_key_id AS key FROM intake.messages WHERE id = ANY($1::uuid[])
         UNION ALL SELECT message->'email'->'$pii'->>'key_id' FROM intake.messages WHERE id = ANY($1::uuid[])
       ) k GROUP BY key ORDER BY key`,
      [ids],
    );
    const total = r.rows.reduce((s, x) => s + x.n, 0);
    assert.equal(total, ids.length * 2);
    for (const row of r.rows) assert.ok(row.n <= MAX, `key ${row.key} carried ${row.n} > ${MAX} encryptions`);
    assert.ok(r.rows.length >= Math.ceil(total / MAX), `only ${r.rows.length} keys for ${total} encryptions`);
    const audit = await client.query(
      "SELECT count(*)::int AS n FROM intake.audit_log WHERE action = 'rotate-key' AND detail->>'reason' = 'encryption budget'",
    );
    assert.ok(audit.rows[0].n >= r.rows.length - 1, 'each budget rotation is audited');
    // Still revealable, each under its own key.
    for (const id of [ids[0]!, ids[ids.length - 1]!]) {
      const shown = (await (await fetch(`${app.url}/v1/messages/${id}/revealed`)).json()) as {
        'sent-from-ip': string;
        message: { email: string };
      };
      assert.match(shown['sent-from-ip'], /^10\.[01]\./);
      assert.match(shown.message.email, /@x\.org$/);
    }
  });
});

describe('intake keys rotate-master', () => {
  test('re-wraps every key under the new master key; old and new messages stay revealable and erasable by IP', async () => {
    const { db, client, dir } = await freshDb('keyrot_master');
    const m1 = randomBytes(32).toString('base64');
    const m2 = randomBytes(32).toString('base64');
    const base = { DATABASE_URL: db.url, INTAKE_DATA_DIR: dir, INTAKE_PII_MESSAGE_FIELDS: 'email' };
    const withM1 = { ...base, INTAKE_PII_MASTER_KEY: m1 };
    const both = { ...base, INTAKE_PII_MASTER_KEY: m2, INTAKE_PII_PREVIOUS_MASTER_KEY: m1 };
    const withM2 = { ...base, INTAKE_PII_MASTER_KEY: m2 };
    const stored = (ids: string[]) =>
      waitFor(
        'stored',
        async () =>
          (
            await client.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])', [
              ids,
            ])
          ).rows[0].n === ids.length,
      );

    // Before: messages under the first master key.
    const a = await startRole('start', withM1, procs);
    const old = [await post(a.url, '203.0.113.5', { email: 'old@x.org' }), await post(a.url, '203.0.113.6')];
    await stored(old);
    await a.stop();

    // The new key alone, before the rotation, opens nothing: it fails loudly rather than making new pseudonyms.
    const early = await intake(withM2, 'pii', 'export', '203.0.113.5');
    assert.notEqual(early.code, 0);
    assert.match(early.stderr, /INTAKE_PII_PREVIOUS_MASTER_KEY/);

    // Step 1: every process runs with the new key and the previous one; a new data key is made under it.
    const b = await startRole('start', { ...both, INTAKE_DATA_KEY_REFRESH_SECONDS: '1' }, procs);
    const rot = await intake(both, 'keys', 'rotate');
    assert.equal(rot.code, 0, rot.stderr);
    await new Promise((r) => setTimeout(r, 2500));
    const fresh = [await post(b.url, '203.0.113.5', { email: 'new@x.org' })];
    await stored(fresh);

    // Step 2: re-wrap.
    const dry = await intake(both, 'keys', 'rotate-master', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(JSON.parse(dry.stdout).to_rewrap.includes('keyring:pseudonym'));
    // From an API pod, as the runbook has it: with the API's own least-privilege database role.
    const asApi = new URL(db.url);
    asApi.searchParams.set('options', '-c role=intake_api');
    const done = await intake({ ...both, DATABASE_URL: asApi.toString() }, 'keys', 'rotate-master');
    assert.equal(done.code, 0, done.stderr);
    const report = JSON.parse(done.stdout);
    assert.ok(report.data_keys.rewrapped >= 1);
    assert.equal(report.pseudonym_key_rewrapped, true);
    const again = JSON.parse((await intake(both, 'keys', 'rotate-master')).stdout);
    assert.equal(again.data_keys.rewrapped, 0, 'a second run has nothing left to do');
    await b.stop();

    // Step 3: the new key alone opens everything, old and new.
    const c = await startRole('start', withM2, procs);
    for (const [id, ip, email] of [
      [old[0], '203.0.113.5', 'old@x.org'],
      [old[1], '203.0.113.6', undefined],
      [fresh[0], '203.0.113.5', 'new@x.org'],
    ] as const) {
      const shown = (await (await fetch(`${c.url}/v1/messages/${id}/revealed`)).json()) as {
        'sent-from-ip': string;
        message: { email?: string };
      };
      assert.equal(shown['sent-from-ip'], ip);
      assert.equal(shown.message.email, email);
    }
    const ex = (await (await fetch(`${c.url}/v1/subjects/ip/203.0.113.5/messages`)).json()) as {
      messages: Array<{ id: string }>;
    };
    assert.deepEqual(ex.messages.map((m) => m.id).sort(), [old[0], fresh[0]].sort());
    const erased = await fetch(`${c.url}/v1/subjects/ip/203.0.113.5`, { method: 'DELETE' });
    assert.equal(((await erased.json()) as { erased: { messages: number } }).erased.messages, 2);

    // The old master key now opens nothing: destroying it is what makes the rotation worth doing.
    const stale = await intake(withM1, 'pii', 'export', '203.0.113.6');
    assert.notEqual(stale.code, 0);
    const audit = await client.query(
      "SELECT actor, detail FROM intake.audit_log WHERE action = 'rotate-key' AND (detail->>'master')::boolean",
    );
    assert.equal(audit.rows.length, 2);
    assert.equal(audit.rows[0].actor, 'cli:keyops');
  });
});
