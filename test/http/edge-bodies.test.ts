import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { type Logger, pino } from 'pino';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

/**
 * Issue 22 item 6, bodies: a UTF-8 byte-order mark before the JSON is ignored (RFC 8259 §8.1 lets a
 * parser do so), and a body that is not an object (`null`, `true`, `1`, `"x"`, `[]`) is a 400 on every
 * route that takes a body, never a 500 with an error-level log line (which could page the on-call).
 */
const BOM = '\ufeff';
const json = { 'content-type': 'application/json' };
const message = (sender: string, n = 1) => ({ ts: 1530228282, sender, message: { n } });

/** A pino logger that keeps its lines, to look for error-level ones. */
function recordingLogger(): { log: Logger; errors: () => Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  return { log, errors: () => lines.filter((l) => (l.level as number) >= 50) };
}

describe('bodies: a byte-order mark is ignored, a body that is not an object is a 400', () => {
  let app: TestApp;
  let db: pg.Client;
  const recorded = recordingLogger();
  before(async () => {
    app = await startTestApp('edge_bodies', { log: recorded.log });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
  });
  after(async () => {
    await db?.end();
    await app?.close();
  });

  const storedFor = async (sender: string, count: number) => {
    await waitFor(`${count} stored for ${sender}`, async () => {
      const r = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1', [sender]);
      return r.rows[0].n === count;
    });
  };

  test('single message with a BOM: 202, stored', async () => {
    const res = await app.post('/v1/messages', BOM + JSON.stringify(message('bom-single')));
    assert.equal(res.status, 202, await res.clone().text());
    await storedFor('bom-single', 1);
  });

  test('batch with a BOM: 202, every item stored', async () => {
    const body = { messages: [message('bom-batch', 1), message('bom-batch', 2)] };
    const res = await app.post('/v1/messages/batch', BOM + JSON.stringify(body));
    assert.equal(res.status, 202, await res.clone().text());
    await storedFor('bom-batch', 2);
  });

  test('NDJSON with a BOM before its first line: every line accepted', async () => {
    const body = `${BOM}${JSON.stringify(message('bom-ndjson', 1))}\n${JSON.stringify(message('bom-ndjson', 2))}\n`;
    const res = await app.post('/v1/messages/batch', body, { 'content-type': 'application/x-ndjson' });
    assert.equal(res.status, 207, await res.clone().text());
    assert.deepEqual(((await res.json()) as { accepted: number }).accepted, 2);
    await storedFor('bom-ndjson', 2);
  });

  test('a BOM anywhere but the start is content: the JSON is invalid, the NDJSON line rejected', async () => {
    await expectProblem(
      await app.post('/v1/messages', ` ${BOM}${JSON.stringify(message('bom-late'))}`),
      400,
      'INVALID_JSON',
    );
    const body = `${JSON.stringify(message('bom-late', 1))}\n${BOM}${JSON.stringify(message('bom-late', 2))}\n`;
    const res = await app.post('/v1/messages/batch', body, { 'content-type': 'application/x-ndjson' });
    const r = (await res.json()) as { items: Array<{ status: string }> };
    assert.deepEqual(
      r.items.map((i) => i.status),
      ['accepted', 'rejected'],
    );
  });

  test('every route that takes a body answers a non-object body with a 400 problem, no error log', async () => {
    // The routes with a request body, from the OpenAPI document: a new one is covered by itself.
    const doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { requestBody?: unknown }>>;
    };
    const withBody = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.requestBody)
        .map(([method, _]) => [method.toUpperCase(), path.replace(/\{[^}]+\}/g, '1.2.3.4')] as const),
    );
    assert.ok(withBody.length >= 3, `routes with bodies: ${JSON.stringify(withBody)}`);
    const targets = withBody.flatMap(
      ([method, path]): Array<readonly [string, string]> =>
        path === '/v1/messages/batch'
          ? [
              [method, path],
              [method, `${path}?mode=partial`],
              [method, `${path}?mode=all`],
            ]
          : [[method, path]],
    );
    const seen: string[] = [];
    for (const [method, path] of targets) {
      for (const body of ['null', 'true', '1', '"x"', '[]']) {
        const res = await fetch(app.url + path, { method, headers: json, body });
        seen.push(`${method} ${path} ${body} → ${res.status}`);
        // A message route says the message contract is broken; an admin route, the request.
        const code = path.startsWith('/v1/messages') ? 'INVALID_MESSAGE' : 'INVALID_REQUEST';
        const p = await expectProblem(res, 400, code);
        assert.ok(p.errors?.length, `${method} ${path} ${body}: the violation is listed`);
      }
    }
    assert.deepEqual(recorded.errors(), [], `no error-level log line (${seen.join('; ')})`);
  });
});
