import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { REJECT_REASONS } from '../../src/ops/metrics.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * Loss accounting at the edge (docs/alerting.md): every refusal of an ingest request, wherever it is
 * decided (auth and rate-limit hooks, content type and encoding, body limit, JSON parsing, validation,
 * idempotency, the queue), counts its messages in intake_messages_received_total and in
 * intake_messages_rejected_total under its reason, over real HTTP; and received = accepted + duplicate +
 * rejected holds after all of them. Before this, 401, 403 by scope, 413, 415, 429 and INVALID_JSON were
 * counted nowhere, so a flood of them was invisible to IntakeRejectedInvalidHigh.
 */
/** Room for a body with 10,001 fields (JSON_TOO_COMPLEX) under the limit. */
const LIMIT = 128 * 1024;
const MSG = { ts: 1530228282, sender: 'counted', message: { a: 1 } };

let app: TestApp;
const ingest = generateKey('ingester', ['ingest']);
const reader = generateKey('reader', ['read']);
const bound = generateKey('bound', ['ingest'], ['counted']);
const limited = generateKey('limited', ['ingest']);
const bulk = generateKey('bulk', ['ingest']);
// One token, refilled every ~3 hours: its second request is refused when it arrives.
limited.entry.rateLimit = { perSecond: 0.0001, burst: 1 };
// Three tokens: one request of five messages pays one on arrival and cannot pay the other four.
bulk.entry.rateLimit = { perSecond: 0.0001, burst: 3 };

const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });

before(async () => {
  app = await startTestApp('refusal_counts', {
    // No worker: the queue only fills, so QUEUE_FULL can be reached on purpose at the end.
    roles: ['api'],
    env: {
      INTAKE_API_KEYS: JSON.stringify([ingest.entry, reader.entry, bound.entry, limited.entry, bulk.entry]),
      INTAKE_BODY_LIMIT_BYTES: String(LIMIT),
      INTAKE_QUEUE_MAX_MESSAGES: '3',
    },
  });
});
after(async () => {
  await app?.close();
});

/** The intake_messages_* series of /metrics, by name and labels. */
async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^(intake_messages_\w+(?:\{[^}]*\})?) (\S+)$/gm))
    out.set(m[1]!, Number(m[2]));
  return out;
}

/** What changed between two scrapes (series that did not change are left out). */
function changes(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) if (v !== (a.get(k) ?? 0)) out[k] = v - (a.get(k) ?? 0);
  return out;
}

const rejected = (reason: string) => `intake_messages_rejected_total{reason="${reason}"}`;

/** Sends one request and asserts its status and that exactly `n` messages were counted under `reason`. */
async function expectCounted(
  send: () => Promise<{ status: number; code?: string }>,
  want: { status: number; code: string; reason: string; n?: number },
): Promise<void> {
  const before = await scrape();
  const res = await send();
  assert.equal(res.status, want.status, `status (code ${res.code})`);
  assert.equal(res.code, want.code);
  const n = want.n ?? 1;
  assert.deepEqual(changes(before, await scrape()), {
    intake_messages_received_total: n,
    [rejected(want.reason)]: n,
  });
}

async function post(
  path: string,
  body: string | Buffer,
  headers: Record<string, string>,
): Promise<{ status: number; code?: string }> {
  const res = await fetch(app.url + path, { method: 'POST', headers, body });
  const text = await res.text();
  const code = res.headers.get('content-type')?.startsWith('application/problem+json')
    ? (JSON.parse(text) as { code: string }).code
    : undefined;
  return { status: res.status, ...(code ? { code } : {}) };
}

const json = { 'content-type': 'application/json' };

describe('every refusal of an ingest request counts its messages under its reason', () => {
  test('every reason is exported from the start, at 0', async () => {
    const m = await scrape();
    for (const reason of REJECT_REASONS) assert.equal(m.get(rejected(reason)), 0, reason);
  });

  test('401 without a key or with an unknown one: unauthenticated', async () => {
    const want = { status: 401, code: 'UNAUTHENTICATED', reason: 'unauthenticated' };
    await expectCounted(() => post('/v1/messages', JSON.stringify(MSG), json), want);
    await expectCounted(
      () => post('/v1/messages/batch', '{}', { ...json, authorization: 'Bearer ik_wrong' }),
      want,
    );
  });

  test('403 for a key without the ingest scope, and for a sender the key may not use: forbidden', async () => {
    const want = { status: 403, code: 'FORBIDDEN', reason: 'forbidden' };
    await expectCounted(
      () => post('/v1/messages', JSON.stringify(MSG), { ...json, ...bearer(reader) }),
      want,
    );
    await expectCounted(
      () =>
        post('/v1/messages', JSON.stringify({ ...MSG, sender: 'someone-else' }), {
          ...json,
          ...bearer(bound),
        }),
      want,
    );
    const batch = { messages: [MSG, { ...MSG, sender: 'someone-else' }] };
    await expectCounted(
      () => post('/v1/messages/batch', JSON.stringify(batch), { ...json, ...bearer(bound) }),
      { ...want, n: 2 },
    );
  });

  test('429 when the request arrives, and when its messages cannot be paid: rate_limited', async () => {
    const want = { status: 429, code: 'RATE_LIMITED', reason: 'rate_limited' };
    const first = await post('/v1/messages', '{}', { ...json, ...bearer(limited) });
    assert.equal(first.status, 400, 'the one token is spent');
    await expectCounted(
      () => post('/v1/messages', JSON.stringify(MSG), { ...json, ...bearer(limited) }),
      want,
    );
    const five = { messages: Array.from({ length: 5 }, () => MSG) };
    await expectCounted(
      () => post('/v1/messages/batch', JSON.stringify(five), { ...json, ...bearer(bulk) }),
      { ...want, n: 5 },
    );
  });

  test('415 for another media type, charset or Content-Encoding: unsupported_media_type', async () => {
    const auth = bearer(ingest);
    await expectCounted(
      () => post('/v1/messages', JSON.stringify(MSG), { 'content-type': 'text/plain', ...auth }),
      {
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
        reason: 'unsupported_media_type',
      },
    );
    await expectCounted(
      () =>
        post('/v1/messages', JSON.stringify(MSG), {
          'content-type': 'application/json; charset=latin1',
          ...auth,
        }),
      { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', reason: 'unsupported_media_type' },
    );
    await expectCounted(
      () =>
        post('/v1/messages', gzipSync(JSON.stringify(MSG)), {
          ...json,
          'content-encoding': 'compress',
          ...auth,
        }),
      { status: 415, code: 'UNSUPPORTED_ENCODING', reason: 'unsupported_media_type' },
    );
  });

  test('400 for a body that is not JSON, not UTF-8 or too complex: invalid_json', async () => {
    const auth = { ...json, ...bearer(ingest) };
    await expectCounted(() => post('/v1/messages', '{"ts":', auth), {
      status: 400,
      code: 'INVALID_JSON',
      reason: 'invalid_json',
    });
    await expectCounted(() => post('/v1/messages/batch', Buffer.from([0x7b, 0xff, 0x7d]), auth), {
      status: 400,
      code: 'INVALID_JSON',
      reason: 'invalid_json',
    });
    const fields = `{${Array.from({ length: 10_001 }, (_, i) => `"f${i}":0`).join(',')}}`;
    await expectCounted(() => post('/v1/messages', fields, auth), {
      status: 400,
      code: 'JSON_TOO_COMPLEX',
      reason: 'invalid_json',
    });
  });

  test('413 for a body over the limit, also refused before it is sent (Expect: 100-continue): too_large', async () => {
    const want = { status: 413, code: 'BODY_TOO_LARGE', reason: 'too_large' };
    const big = JSON.stringify({ ...MSG, message: { a: 'x'.repeat(LIMIT) } });
    await expectCounted(() => post('/v1/messages', big, { ...json, ...bearer(ingest) }), want);
    await expectCounted(() => expectContinueRefused(big, { ...json, ...bearer(ingest) }), want);
  });

  test('400 for a message that breaks the contract (single and batch): invalid', async () => {
    const auth = { ...json, ...bearer(ingest) };
    const want = { status: 400, code: 'INVALID_MESSAGE', reason: 'invalid' };
    await expectCounted(() => post('/v1/messages', JSON.stringify({ ...MSG, ts: 'soon' }), auth), want);
    const batch = { messages: [MSG, { ...MSG, ts: -1 }, MSG] };
    await expectCounted(() => post('/v1/messages/batch', JSON.stringify(batch), auth), { ...want, n: 3 });
  });

  test('400 for a malformed header, 422 for a reused Idempotency-Key: invalid_request', async () => {
    const auth = { ...json, ...bearer(ingest) };
    await expectCounted(
      () => post('/v1/messages', JSON.stringify(MSG), { ...auth, 'idempotency-key': 'k'.repeat(300) }),
      { status: 400, code: 'INVALID_REQUEST', reason: 'invalid_request' },
    );
    const first = await post('/v1/messages', JSON.stringify(MSG), { ...auth, 'idempotency-key': 'reused' });
    assert.equal(first.status, 202);
    await expectCounted(
      () => post('/v1/messages', JSON.stringify({ ...MSG, ts: 1 }), { ...auth, 'idempotency-key': 'reused' }),
      { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', reason: 'invalid_request' },
    );
  });

  test('per item (NDJSON, 207): each refused line under its own reason, the good one accepted', async () => {
    const before = await scrape();
    const lines = [
      JSON.stringify(MSG),
      '{"ts":',
      JSON.stringify({ ...MSG, ts: 'soon' }),
      JSON.stringify({ ...MSG, sender: 'someone-else' }),
    ].join('\n');
    const res = await post('/v1/messages/batch', lines, {
      'content-type': 'application/x-ndjson',
      ...bearer(bound),
    });
    assert.equal(res.status, 207);
    assert.deepEqual(changes(before, await scrape()), {
      intake_messages_received_total: 4,
      intake_messages_accepted_total: 1,
      [rejected('invalid_json')]: 1,
      [rejected('invalid')]: 1,
      [rejected('forbidden')]: 1,
    });
  });

  test('503 when the queue is full: queue_full', async () => {
    const auth = { ...json, ...bearer(ingest) };
    // The queue (3 messages) fills; the producer sees it at its next sample, at most a second later.
    let last: { status: number; code?: string } = { status: 0 };
    await waitFor('the queue to refuse', async () => {
      last = await post('/v1/messages', JSON.stringify(MSG), auth);
      return last.status === 503;
    });
    assert.equal(last.code, 'QUEUE_FULL');
    await expectCounted(() => post('/v1/messages/batch', JSON.stringify({ messages: [MSG, MSG] }), auth), {
      status: 503,
      code: 'QUEUE_FULL',
      reason: 'queue_full',
      n: 2,
    });
  });

  test('after all of them: received = accepted + duplicate + rejected', async () => {
    const m = await scrape();
    const sum = (prefix: string) =>
      [...m].filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);
    const received = m.get('intake_messages_received_total')!;
    assert.ok(received >= 30, `received ${received}`);
    assert.equal(
      received,
      m.get('intake_messages_accepted_total')! +
        m.get('intake_messages_duplicate_total')! +
        sum('intake_messages_rejected_total{'),
    );
  });
});

/**
 * A POST with `Expect: 100-continue` and a Content-Length over the limit: intake refuses it from the
 * headers, so the body is never sent (node:http, since fetch cannot wait for 100 Continue).
 */
function expectContinueRefused(
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${app.url}/v1/messages`, {
      method: 'POST',
      headers: { ...headers, expect: '100-continue', 'content-length': String(Buffer.byteLength(body)) },
    });
    req.on('continue', () => reject(new Error('100 Continue: the body was asked for')));
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { code: string }).code });
      });
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}
