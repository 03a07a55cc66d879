import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ADMIN_URL, createTestDatabase, quietLog, type TestDatabase, waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { newMessageId } from '../../src/contract/message-id.ts';
import { pruneErasedMessages } from '../../src/store/message-status.ts';
import { migrate } from '../../src/store/migrate.ts';
import {
  canMaintainPartitions,
  dropExpiredPartitions,
  ensurePartitions,
  partitionsAheadDays,
} from '../../src/store/partitions.ts';
import { scrape, startRole, tempDir } from '../helpers/nats-roles.ts';

/**
 * Each database role as an attacker holding its login would play it (docs/security.md): real logins
 * (members of intake_api and intake_worker, as CloudNativePG's managed roles are, and a role with no
 * membership, as any other login on the cluster) try every DDL and function they must not run, each
 * refused with SQLSTATE 42501 (insufficient_privilege), and the whole grant matrix is held to the list
 * in sql/grants.sql. Then the real api and worker processes, logged in as those roles, do their jobs.
 */
const LETTERS: Record<string, string> = {
  r: 'SELECT',
  a: 'INSERT',
  w: 'UPDATE',
  d: 'DELETE',
  D: 'TRUNCATE',
  x: 'REFERENCES',
  t: 'TRIGGER',
};
/** Table privileges per group role, in PostgreSQL's ACL letters; every other relation: none. */
const EXPECTED_TABLES: Record<string, Record<string, string>> = {
  intake_api: {
    schema_version: 'r',
    messages: 'rd',
    queue: 'rad',
    idempotency_keys: 'rad',
    dead_letters: 'rd',
    data_keys: 'raw',
    erasures: 'raw',
    keyring: 'ra',
    audit_log: 'a',
    erased_messages: 'ra',
  },
  intake_worker: {
    schema_version: 'r',
    messages: 'ra',
    queue: 'rawd',
    dead_letters: 'ra',
    erasures: 'r',
    erased_messages: 'a',
  },
  public: {},
};
/** Column privileges beyond the table ones, as `table.column: letters` (UPDATE of single columns). */
const EXPECTED_COLUMNS: Record<string, string[]> = {
  intake_api: [
    'idempotency_keys.fingerprint: w',
    'keyring.kek_id: w',
    'keyring.rewrapped_at: w',
    'keyring.wrapped: w',
  ],
  intake_worker: ['sync_marks.marked_at: w'],
  public: [],
};
const EXPECTED_FUNCTIONS: Record<string, string[]> = {
  intake_api: [],
  intake_worker: ['prune_erased_messages'],
  public: [],
};

const suffix = randomBytes(4).toString('hex');
/** Login roles for this file (roles are cluster-wide, so uniquely named and dropped after). */
const LOGINS = {
  api: `intake_t_api_${suffix}`,
  worker: `intake_t_worker_${suffix}`,
  other: `intake_t_other_${suffix}`,
};

let tdb: TestDatabase;
let admin: pg.Client;
const clients = new Map<keyof typeof LOGINS, pg.Client>();
const urlAs = (login: string) => {
  const u = new URL(tdb.url);
  u.username = login;
  u.password = '';
  return u.toString();
};
let today = '';

before(async () => {
  tdb = await createTestDatabase('db_roles');
  admin = new pg.Client({ connectionString: tdb.url });
  await admin.connect();
  await admin.query(`CREATE ROLE ${LOGINS.api} LOGIN IN ROLE intake_api`);
  await admin.query(`CREATE ROLE ${LOGINS.worker} LOGIN IN ROLE intake_worker`);
  await admin.query(`CREATE ROLE ${LOGINS.other} LOGIN`);
  for (const [k, login] of Object.entries(LOGINS)) {
    const c = new pg.Client({ connectionString: urlAs(login) });
    await c.connect();
    clients.set(k as keyof typeof LOGINS, c);
  }
  today = (
    await admin.query<{ p: string }>(
      `SELECT 'messages_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') AS p`,
    )
  ).rows[0]!.p;
});
after(async () => {
  for (const c of clients.values()) await c.end().catch(() => {});
  await admin?.end();
  await tdb?.drop();
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    for (const login of Object.values(LOGINS)) await c.query(`DROP ROLE IF EXISTS ${login}`);
  } finally {
    await c.end();
  }
});

/** Runs `sql` as the role in a transaction that is rolled back, whatever happens. */
async function attempt(who: keyof typeof LOGINS, sql: string, args: unknown[] = []) {
  const c = clients.get(who)!;
  await c.query('BEGIN');
  try {
    return await c.query(sql, args);
  } finally {
    await c.query('ROLLBACK');
  }
}

async function refused(who: keyof typeof LOGINS, sql: string, args: unknown[] = []): Promise<void> {
  await assert.rejects(
    attempt(who, sql, args),
    (err: { code?: string; message: string }) => {
      assert.equal(err.code, '42501', `${who}: ${sql} failed with ${err.code}: ${err.message}`);
      return true;
    },
    `${who} ran: ${sql}`,
  );
}

/** What no role but the owner may do: DDL, code execution, direct partition access, the metadata. */
const OWNER_ONLY = () => [
  'CREATE TABLE intake.evil (a int)',
  'CREATE TABLE public.evil (a int)',
  'CREATE TABLE evil (a int)',
  'CREATE SCHEMA evil',
  'CREATE FUNCTION intake.evil() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
  'CREATE INDEX evil ON intake.messages (sender)',
  'DROP TABLE intake.messages',
  `DROP TABLE intake.${today}`,
  'DROP TABLE intake.queue',
  'DROP TABLE intake.data_keys',
  'DROP SCHEMA intake CASCADE',
  'ALTER TABLE intake.messages ADD COLUMN evil int',
  `ALTER TABLE intake.messages DETACH PARTITION intake.${today}`,
  'ALTER TABLE intake.audit_log DISABLE TRIGGER ALL',
  'TRUNCATE intake.messages',
  'TRUNCATE intake.queue',
  'TRUNCATE intake.audit_log',
  'TRUNCATE intake.dead_letters',
  `DELETE FROM intake.${today}`,
  `SELECT count(*) FROM intake.${today}`,
  'DROP FUNCTION intake.drop_partitions_before(timestamptz)',
  'ALTER FUNCTION intake.ensure_partitions(integer, integer) SECURITY INVOKER',
  'CREATE OR REPLACE FUNCTION intake.ensure_partitions(a integer, b integer) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$',
  'UPDATE intake.retention_policy SET days = 1',
  'SELECT days FROM intake.retention_policy',
  "INSERT INTO intake.schema_version (version, name, md5, run_at) VALUES (999, 'x', 'x', now())",
  'DELETE FROM intake.schema_version',
  'UPDATE intake.audit_log SET actor = $$x$$',
  'DELETE FROM intake.audit_log',
  "COPY (SELECT 1) TO PROGRAM 'true'",
  "SELECT pg_read_file('postgresql.conf')",
  'SET ROLE postgres',
];

describe('database roles: least privilege, as real logins', () => {
  test('no function of the schema is executable by PUBLIC', async () => {
    const r = await admin.query<{ name: string; public: boolean }>(
      `SELECT p.oid::regprocedure::text AS name,
              coalesce(bool_or(a.grantee = 0), true) AS public
         FROM pg_proc p
         LEFT JOIN LATERAL aclexplode(p.proacl) a ON true
        WHERE p.pronamespace = 'intake'::regnamespace
        GROUP BY p.oid`,
    );
    assert.ok(r.rows.length >= 2, 'the partition functions exist');
    assert.deepEqual(
      r.rows.filter((f) => f.public).map((f) => f.name),
      [],
    );
  });

  test('the grant matrix is exactly sql/grants.sql, partitions and sequences included', async () => {
    const rels = await admin.query<{ relname: string }>(
      `SELECT relname FROM pg_class WHERE relnamespace = 'intake'::regnamespace AND relkind IN ('r', 'p', 'S', 'v', 'm')
        ORDER BY relname`,
    );
    assert.ok(
      rels.rows.some((r) => r.relname === today),
      `today's partition ${today} exists`,
    );
    const actual: Record<string, Record<string, string>> = {};
    const expected: Record<string, Record<string, string>> = {};
    for (const role of Object.keys(EXPECTED_TABLES)) {
      actual[role] = {};
      expected[role] = {};
      const subject = role === 'public' ? LOGINS.other : role;
      for (const { relname } of rels.rows) {
        let letters = '';
        for (const [letter, priv] of Object.entries(LETTERS)) {
          const r = await admin.query<{ ok: boolean }>(
            `SELECT CASE WHEN c.relkind = 'S' THEN $4 IN ('SELECT', 'UPDATE') AND has_sequence_privilege($1, c.oid, $4)
                         ELSE has_table_privilege($1, c.oid, $3) END AS ok
               FROM pg_class c WHERE c.relnamespace = 'intake'::regnamespace AND c.relname = $2`,
            [subject, relname, priv, priv],
          );
          if (r.rows[0]!.ok) letters += letter;
        }
        if (letters) actual[role]![relname] = letters;
      }
      for (const [t, l] of Object.entries(EXPECTED_TABLES[role]!)) expected[role]![t] = l;
    }
    assert.deepEqual(actual, expected);

    const columns: Record<string, string[]> = {};
    for (const role of Object.keys(EXPECTED_COLUMNS)) {
      const subject = role === 'public' ? LOGINS.other : role;
      const r = await admin.query<{ col: string; letters: string }>(
        `SELECT c.relname || '.' || a.attname AS col,
                concat_ws('', CASE WHEN has_column_privilege($1, c.oid, a.attnum, 'SELECT') THEN 'r' END,
                              CASE WHEN has_column_privilege($1, c.oid, a.attnum, 'INSERT') THEN 'a' END,
                              CASE WHEN has_column_privilege($1, c.oid, a.attnum, 'UPDATE') THEN 'w' END) AS letters
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE c.relnamespace = 'intake'::regnamespace AND c.relkind IN ('r', 'p')
            AND NOT c.relispartition AND a.attacl IS NOT NULL
          ORDER BY 1`,
        [subject],
      );
      // Only what a column grant adds to the table's own privileges.
      const table = actual[role] ?? {};
      columns[role] = r.rows
        .map(({ col, letters }) => {
          const own = table[col.split('.')[0]!] ?? '';
          return [col, [...letters].filter((l) => !own.includes(l)).join('')] as const;
        })
        .filter(([, extra]) => extra)
        .map(([col, extra]) => `${col}: ${extra}`);
    }
    assert.deepEqual(columns, EXPECTED_COLUMNS);

    const fns: Record<string, string[]> = {};
    for (const role of Object.keys(EXPECTED_FUNCTIONS)) {
      const subject = role === 'public' ? LOGINS.other : role;
      const r = await admin.query<{ proname: string }>(
        `SELECT proname FROM pg_proc WHERE pronamespace = 'intake'::regnamespace
            AND has_function_privilege($1, oid, 'EXECUTE') ORDER BY proname`,
        [subject],
      );
      fns[role] = r.rows.map((x) => x.proname);
    }
    assert.deepEqual(fns, EXPECTED_FUNCTIONS);

    const db = await admin.query<Record<string, boolean>>(
      `SELECT has_database_privilege($1, current_database(), 'CREATE') AS api_create,
              has_database_privilege($1, current_database(), 'TEMPORARY') AS api_temp,
              has_database_privilege($2, current_database(), 'CREATE') AS worker_create,
              has_database_privilege($2, current_database(), 'TEMPORARY') AS worker_temp,
              has_database_privilege($3, current_database(), 'TEMPORARY') AS other_temp,
              has_schema_privilege($1, 'intake', 'CREATE') AS api_intake_create,
              has_schema_privilege($2, 'intake', 'CREATE') AS worker_intake_create,
              has_schema_privilege($3, 'intake', 'USAGE') AS other_intake_usage,
              has_schema_privilege($3, 'public', 'CREATE') AS other_public_create`,
      ['intake_api', 'intake_worker', LOGINS.other],
    );
    // Only the worker stages batches in a temporary table (store/messages.ts).
    assert.deepEqual(db.rows[0], {
      api_create: false,
      api_temp: false,
      worker_create: false,
      worker_temp: true,
      other_temp: false,
      api_intake_create: false,
      worker_intake_create: false,
      other_intake_usage: false,
      other_public_create: false,
    });
  });

  for (const who of ['api', 'worker', 'other'] as const) {
    test(`${who}: every DDL and owner-only statement is refused`, async () => {
      for (const sql of OWNER_ONLY()) await refused(who, sql);
    });
  }

  test('no role but the owner runs the partition functions, not even within their bounds', async () => {
    for (const who of ['api', 'worker', 'other'] as const) {
      assert.equal(await canMaintainPartitions(clients.get(who)!), false, who);
      await refused(who, 'SELECT intake.ensure_partitions(1, 7)');
      await refused(who, 'SELECT intake.ensure_partitions(0, 0)');
      await refused(who, "SELECT intake.drop_partitions_before('-infinity')");
      await refused(who, "SELECT intake.drop_partitions_before('infinity')");
      await refused(who, `SELECT intake.drop_partitions_before(now() - interval '40 days')`);
      if (who !== 'worker') await refused(who, 'SELECT intake.prune_erased_messages()');
    }
    assert.equal(await canMaintainPartitions(admin), true, 'the owner may');
    const left = await admin.query(`SELECT to_regclass($1) AS t`, [`intake.${today}`]);
    assert.ok(left.rows[0].t, "today's partition is still there");
  });

  test('the worker reads how far partitions reach without the right to change them', async () => {
    const worker = clients.get('worker')!;
    assert.equal(await partitionsAheadDays(worker), await partitionsAheadDays(admin));
    assert.ok((await partitionsAheadDays(worker)) >= 0);
  });

  test('the worker reads no key material, audit log or other role-only rows', async () => {
    await refused('worker', 'SELECT * FROM intake.data_keys');
    await refused('worker', 'SELECT * FROM intake.audit_log');
    await refused('worker', 'SELECT * FROM intake.idempotency_keys');
    await refused('worker', 'DELETE FROM intake.messages');
    await refused('worker', 'UPDATE intake.messages SET sender = $$x$$');
    await refused('worker', 'DELETE FROM intake.erasures');
    // Erased-message records: the worker only adds them, nobody but the bounded prune deletes them.
    await refused('worker', 'SELECT * FROM intake.erased_messages');
    await refused('worker', 'DELETE FROM intake.erased_messages');
    await refused('api', 'DELETE FROM intake.erased_messages');
    await refused('api', 'UPDATE intake.erased_messages SET sender = $$x$$');
    // The sync mark (migration 011): one UPDATE, nothing else, and only for the worker.
    await attempt('worker', 'UPDATE intake.sync_marks SET marked_at = now()');
    await refused('worker', 'SELECT * FROM intake.sync_marks');
    await refused('worker', 'INSERT INTO intake.sync_marks (singleton) VALUES (false)');
    await refused('worker', 'DELETE FROM intake.sync_marks');
    await refused('api', 'UPDATE intake.sync_marks SET marked_at = now()');
    await refused('other', 'UPDATE intake.sync_marks SET marked_at = now()');
    await refused('api', 'UPDATE intake.messages SET sender = $$x$$');
    await refused(
      'api',
      'INSERT INTO intake.messages (id, received_at, ts, sender, message) VALUES (gen_random_uuid(), now(), 1, $$x$$, $${}$$)',
    );
    await refused('api', 'SELECT * FROM intake.audit_log');
    await refused('api', 'CREATE TEMP TABLE t (a int)');
    await refused('other', 'SELECT * FROM intake.messages');
    await refused('other', 'SELECT * FROM intake.data_keys');
    await refused('other', 'CREATE TEMP TABLE t (a int)');
  });

  test('partition maintenance as the owner: within the policy `intake migrate` set, and no further', async () => {
    const old = (days: number) =>
      admin.query<{ p: string }>(
        `SELECT 'messages_' || to_char(d, 'YYYYMMDD') AS p, d FROM
           (SELECT (now() AT TIME ZONE 'UTC')::date - $1::int AS d) x`,
        [days],
      );
    const make = async (days: number) => {
      const d = (await old(days)).rows[0]!.p;
      await admin.query(
        `CREATE TABLE IF NOT EXISTS intake.${d} PARTITION OF intake.messages FOR VALUES FROM
           (((now() AT TIME ZONE 'UTC')::date - ${days})::timestamp AT TIME ZONE 'UTC') TO
           (((now() AT TIME ZONE 'UTC')::date - ${days - 1})::timestamp AT TIME ZONE 'UTC')`,
      );
      return d;
    };
    const forty = await make(40);
    const twelve = await make(12);
    assert.ok((await ensurePartitions(admin)) >= 0);
    assert.deepEqual(await dropExpiredPartitions(admin, 30), [forty]);
    // The worker prunes the erased-message records (migration 008), bounded by the same policy.
    await admin.query(
      `INSERT INTO intake.erased_messages (id, sender, erased_at) VALUES
         (gen_random_uuid(), 'roles-old', now() - interval '31 days'), (gen_random_uuid(), 'roles-new', now())`,
    );
    assert.equal(await pruneErasedMessages(clients.get('worker')!), 1);
    assert.deepEqual(
      (await admin.query('SELECT sender FROM intake.erased_messages')).rows.map((r) => r.sender),
      ['roles-new'],
    );
    await admin.query('DELETE FROM intake.erased_messages');
    // The operator shortens retention: `intake migrate` with INTAKE_RETENTION_DAYS=10.
    await assert.rejects(dropExpiredPartitions(admin, 10), { code: '42501' });
    await migrate(tdb.url, quietLog, { retentionDays: 10 });
    await assert.rejects(dropExpiredPartitions(admin, 9), { code: '42501' });
    assert.deepEqual(await dropExpiredPartitions(admin, 10), [twelve]);
    await migrate(tdb.url, quietLog, { retentionDays: 30 });
  });

  test('intake api and intake worker, logged in as these roles, do their jobs', async () => {
    const dir = tempDir('db-roles');
    const procs: IntakeProcess[] = [];
    try {
      // Retention of dead letters runs as the API role too (at start, then hourly).
      await admin.query(
        `INSERT INTO intake.dead_letters (id, payload, reason, attempts, failed_at)
         VALUES (gen_random_uuid(), '{"sender":"roles-expired"}', 'old', 5, now() - interval '60 days')`,
      );
      const env = (login: string) => ({ DATABASE_URL: urlAs(login), INTAKE_DATA_DIR: dir.path });
      const [api, worker] = await Promise.all([
        startRole('api', env(LOGINS.api), procs),
        startRole('worker', env(LOGINS.worker), procs),
      ]);
      // The worker leaves partition DDL to the owner, says so once, and still reports how far they reach.
      assert.equal(worker!.logs.filter((l) => /partition maintenance left to/.test(String(l.msg))).length, 1);
      await waitFor('intake_partitions_ahead from the worker login', async () => {
        return (
          (await scrape(worker!.url)).get('intake_partitions_ahead') === (await partitionsAheadDays(admin))
        );
      });
      const res = await fetch(`${api.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'roles-1' },
        body: JSON.stringify({ ts: 1, sender: 'roles', message: { a: 1 }, 'sent-from-ip': '192.0.2.77' }),
      });
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      await waitFor('stored by the worker login', async () => {
        return (await fetch(`${api.url}/v1/messages/${id}`)).status === 200;
      });
      assert.equal((await fetch(`${api.url}/v1/messages?sender=roles`)).status, 200);
      assert.equal((await fetch(`${api.url}/v1/dead-letters`)).status, 200);
      const exp = await fetch(`${api.url}/v1/subjects/ip/192.0.2.77/messages`);
      assert.equal(exp.status, 200);
      const inFlight = newMessageId(); // received before the erasure, queued after it (a redelivery)
      const erase = await fetch(`${api.url}/v1/subjects/ip/192.0.2.77`, { method: 'DELETE' });
      assert.equal(erase.status, 200);
      assert.equal((await fetch(`${api.url}/v1/messages/${id}`)).status, 404);
      // Recorded by the API login's erasure, read by its status route.
      const status = async (of: string) =>
        ((await (await fetch(`${api.url}/v1/messages/${of}/status`)).json()) as { status: string }).status;
      assert.equal(await status(id), 'erased');
      // Dropped for the tombstone and recorded by the worker login.
      const pseudonym = (await admin.query(`SELECT encode(pseudonym, 'base64') AS p FROM intake.erasures`))
        .rows[0].p;
      await admin.query('INSERT INTO intake.queue (id, payload) VALUES ($1, $2)', [
        inFlight,
        JSON.stringify({
          v: 1,
          id: inFlight,
          received_at: new Date(
            Number.parseInt(inFlight.slice(0, 8) + inFlight.slice(9, 13), 16),
          ).toISOString(),
          ts: 1,
          sender: 'roles',
          message: { a: 1 },
          priority: null,
          ip: { pseudonym, ciphertext: 'AAAA', key_id: 'x' },
        }),
      ]);
      await waitFor(
        'dropped and recorded by the worker login',
        async () => (await status(inFlight)) === 'erased',
      );
      await waitFor('the expired dead letter deleted by the API login', async () => {
        const r = await admin.query(
          `SELECT 1 FROM intake.dead_letters WHERE payload->>'sender' = 'roles-expired'`,
        );
        return r.rowCount === 0;
      });
    } finally {
      for (const p of procs) await p.stop(5000);
      dir.remove();
    }
  });
});
