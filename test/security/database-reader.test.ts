import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { IntakeClient, type Message } from '../../src/client/index.ts';
import { idempotencyBucket } from '../../src/queue/nats/provision.ts';
import { startRole, tempDir, withDb } from '../helpers/nats-roles.ts';
import {
  findDigest,
  guessesFor,
  readDatabase,
  readNats,
  type StoredValues,
  whereIs,
  whereIsIp,
} from './stored-values.ts';

/**
 * The insider who reads the database (every table and column of the intake schema) and NATS (the
 * stream and the Idempotency-Key bucket) but holds no master key: messages with `sent-from-ip` are
 * sent through the official client (an Idempotency-Key on every request) and directly (single, batch,
 * partial batch, NDJSON, with and without a key); the reader then takes each true IP among the 256
 * addresses of its /24 and tries every unkeyed digest it can compute (SHA-256, SHA-1, MD5 of the IP,
 * and of every body sent with the guess in place of the IP; hex, base64, base64url, raw) against
 * every stored value. No guess may be confirmed, and the IP never appears as text.
 */

/** One thing a client sent that held an IP: the IP, and the exact text sent with another IP in its place. */
interface Sent {
  ip: string;
  texts: Array<(ip: string) => string>;
}

const withIp = (m: Message, ip: string): Message => ({ ...m, 'sent-from-ip': ip });

let server: NatsServer;
const procs: IntakeProcess[] = [];
const dbs: TestDatabase[] = [];
const dir = tempDir('db-reader');

before(async () => {
  server = await startNatsServer();
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await server?.stop();
  for (const d of dbs) await d.drop();
  dir.remove();
});

/** Messages in distinct /24s, so each true IP has its own 256 guesses. */
let nextNet = 1;
function msg(sender: string): Message {
  const n = nextNet++;
  return {
    ts: 1530228282,
    sender,
    message: { n, note: 'hello' },
    'sent-from-ip': `198.51.${n}.${(n * 37) % 256}`,
  };
}

/** Sends every kind of request; returns what was sent, the ids, and the direct keyed requests' keys. */
async function sendAll(url: string): Promise<{ sent: Sent[]; ids: string[]; erasable: Message }> {
  const sent: Sent[] = [];
  const ids: string[] = [];
  const client = new IntakeClient({ url, gzipMinBytes: false });
  for (let i = 0; i < 3; i++) {
    const m = msg('client-send');
    ids.push((await client.send(m)).id);
    sent.push({ ip: m['sent-from-ip']!, texts: [(ip) => JSON.stringify(withIp(m, ip))] });
  }
  const batch = [msg('client-batch'), msg('client-batch'), msg('client-batch')];
  ids.push(...(await client.sendBatch(batch)).ids);
  for (const [i, m] of batch.entries()) {
    sent.push({
      ip: m['sent-from-ip']!,
      texts: [
        (ip) => JSON.stringify(withIp(m, ip)),
        (ip) => JSON.stringify({ messages: batch.map((x, j) => (j === i ? withIp(x, ip) : x)) }),
      ],
    });
  }
  const queued = [msg('client-enqueue'), msg('client-enqueue')];
  const pending = queued.map((m) => client.enqueue(m));
  await client.flush();
  for (const [i, m] of queued.entries()) {
    ids.push((await pending[i]!).id);
    sent.push({ ip: m['sent-from-ip']!, texts: [(ip) => JSON.stringify(withIp(m, ip))] });
  }

  const direct = async (path: string, body: string, key: string | undefined, type = 'application/json') => {
    const headers: Record<string, string> = { 'content-type': type };
    if (key) headers['idempotency-key'] = key;
    const res = await fetch(url + path, { method: 'POST', headers, body });
    const text = await res.text();
    assert.ok([202, 207].includes(res.status), `${path}: ${res.status} ${text}`);
    return JSON.parse(text) as { id?: string; items?: Array<{ id?: string }> };
  };
  for (const key of ['direct-single-key', undefined]) {
    const m = msg('direct');
    ids.push((await direct('/v1/messages', JSON.stringify(m), key)).id!);
    sent.push({ ip: m['sent-from-ip']!, texts: [(ip) => JSON.stringify(withIp(m, ip))] });
  }
  const erasable = msg('direct-erasable');
  ids.push((await direct('/v1/messages', JSON.stringify(erasable), 'erasable-key')).id!);
  sent.push({ ip: erasable['sent-from-ip']!, texts: [(ip) => JSON.stringify(withIp(erasable, ip))] });
  for (const path of ['/v1/messages/batch', '/v1/messages/batch?mode=partial']) {
    const items = [msg('direct-batch'), msg('direct-batch')];
    const r = await direct(path, JSON.stringify({ messages: items }), `batch-key ${path}`);
    ids.push(...r.items!.map((x) => x.id!));
    for (const [i, m] of items.entries()) {
      sent.push({
        ip: m['sent-from-ip']!,
        texts: [
          (ip) => JSON.stringify(withIp(m, ip)),
          (ip) => JSON.stringify({ messages: items.map((x, j) => (j === i ? withIp(x, ip) : x)) }),
        ],
      });
    }
  }
  const lines = [msg('direct-ndjson'), msg('direct-ndjson')];
  const ndjson = (ls: Message[]) => ls.map((l) => JSON.stringify(l)).join('\n');
  const r = await direct('/v1/messages/batch', ndjson(lines), 'ndjson-key', 'application/x-ndjson');
  ids.push(...r.items!.map((x) => x.id!));
  for (const [i, m] of lines.entries()) {
    sent.push({
      ip: m['sent-from-ip']!,
      texts: [
        (ip) => JSON.stringify(withIp(m, ip)),
        (ip) => ndjson(lines.map((x, j) => (j === i ? withIp(x, ip) : x))),
      ],
    });
  }
  return { sent, ids, erasable };
}

/** Every guess of every true IP that one of its digests confirms, with where it was found. */
function confirmed(values: StoredValues, sent: Sent[]): string[] {
  const found: string[] = [];
  for (const s of sent) {
    for (const guess of guessesFor(s.ip)) {
      for (const text of [guess, ...s.texts.map((t) => t(guess))]) {
        const where = findDigest(values, text);
        if (where) found.push(`${guess}${guess === s.ip ? ' (the true IP)' : ''}: ${where}`);
      }
    }
    for (const where of whereIsIp(values, s.ip)) found.push(`${s.ip} in clear in ${where}`);
  }
  return found;
}

for (const queue of ['postgres', 'nats'] as const) {
  describe(`a reader of the database${queue === 'nats' ? ' and of NATS' : ''} (${queue} queue)`, () => {
    let api: IntakeProcess;
    let db: TestDatabase;
    const names = uniqueStream(`reader_${queue}`);
    let run: Awaited<ReturnType<typeof sendAll>>;

    before(async () => {
      db = await createTestDatabase(`reader_${queue}`);
      dbs.push(db);
      api = await startRole(
        'start',
        {
          DATABASE_URL: db.url,
          INTAKE_DATA_DIR: `${dir.path}/${queue}`,
          ...(queue === 'nats' ? natsEnv(server, names) : {}),
        },
        procs,
      );
      run = await sendAll(api.url);
      await withDb(db.url, (c) =>
        waitFor(
          `all ${run.ids.length} messages stored`,
          async () =>
            (
              await c.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])', [
                run.ids,
              ])
            ).rows[0].n === run.ids.length,
          30_000,
        ),
      );
      // Export and reveal fill the audit log too.
      assert.equal((await fetch(`${api.url}/v1/subjects/ip/${run.sent[0]!.ip}/messages`)).status, 200);
      assert.equal((await fetch(`${api.url}/v1/messages/${run.ids[1]}/revealed`)).status, 200);
    });

    const read = async () => {
      const values = await readDatabase(db.url);
      if (queue === 'nats') await readNats(server.url, values);
      return values;
    };

    test('cannot confirm any IP among 256 guesses with any unkeyed digest of the IP or the bodies', async () => {
      const values = await read();
      // The reader really read everything: each message id is in the database (and in the stream).
      for (const id of run.ids)
        assert.ok(whereIs(values, id).length > 0, `message ${id} not found by the reader`);
      if (queue === 'nats')
        assert.ok(
          values.texts.some((t) => t.where.startsWith(`nats KV_${idempotencyBucket(names.stream)}`)),
          'the reader read the Idempotency-Key bucket',
        );
      assert.ok(run.sent.length >= 17);
      const hits = confirmed(values, run.sent);
      assert.deepEqual(hits, [], `the reader confirmed IPs:\n${hits.slice(0, 20).join('\n')}`);
    });

    test('erasure removes the Idempotency-Key records of the subject', async () => {
      const ip = run.erasable['sent-from-ip']!;
      const res = await fetch(`${api.url}/v1/subjects/ip/${ip}`, { method: 'DELETE' });
      assert.equal(res.status, 200);
      const pseudonym = await withDb(
        db.url,
        async (c) =>
          (await c.query(`SELECT encode(pseudonym, 'base64') AS p FROM intake.erasures`)).rows[0].p,
      );
      // The record of the request the subject sent with key `erasable-key` is gone on this queue.
      if (queue === 'postgres') {
        const left = await withDb(db.url, (c) =>
          c.query(`SELECT key FROM intake.idempotency_keys WHERE key LIKE '%erasable-key%'`),
        );
        assert.deepEqual(left.rows, [], 'the erased subject’s Idempotency-Key row is still stored');
      } else {
        const nc = await connect({ servers: server.url });
        try {
          const kv = await new Kvm(jetstream(nc)).open(idempotencyBucket(names.stream));
          const key = createHash('sha256').update('anonymous\nerasable-key').digest('hex');
          const e = await kv.get(key);
          assert.notEqual(e?.operation, 'PUT', 'the erased subject’s Idempotency-Key entry is still stored');
        } finally {
          await nc.close();
        }
      }
      // Nothing but the tombstone and the audit log refers to the subject any more (the NATS message
      // stream is append-only: the worker drops what is left there by the tombstone, docs/privacy.md).
      const values = await read();
      const refs = [
        ...whereIs(values, pseudonym),
        ...whereIs(values, Buffer.from(pseudonym, 'base64').toString('hex')),
        ...whereIs(values, Buffer.from(pseudonym, 'base64').toString('base64url')),
      ].filter((w) => !/^intake\.(erasures|audit_log)\./.test(w) && !w.startsWith(`nats ${names.stream} `));
      assert.deepEqual(refs, [], 'the erased subject is still referred to');
    });
  });
}
