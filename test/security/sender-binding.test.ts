import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

/**
 * A key bound to sender A, as a client holding it would try to read sender B: through every GET route
 * the API publishes (its OpenAPI document), with B's id, B's name and B's IP wherever a route takes
 * one, and through the list's filters and cursors. Nothing of B may come back (docs/security.md).
 */
const A = 'binding-sender-a';
const B = 'binding-sender-b';
const IP_B = '198.51.100.23';

describe('a key bound to senders reads only those senders', () => {
  const boundA = generateKey('bound-a', ['ingest', 'read'], [A]);
  const writer = generateKey('writer', ['ingest', 'read']);
  let app: TestApp;
  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  const ids: Record<string, string[]> = { [A]: [], [B]: [] };

  before(async () => {
    app = await startTestApp('sender_binding', {
      env: { INTAKE_API_KEYS: JSON.stringify([boundA.entry, writer.entry]) },
    });
    for (let i = 0; i < 3; i++) {
      for (const sender of [A, B]) {
        const res = await app.post(
          '/v1/messages',
          {
            ts: 1530228282 + i,
            sender,
            message: { n: i },
            'sent-from-ip': sender === B ? IP_B : '192.0.2.1',
          },
          as(writer.key),
        );
        assert.equal(res.status, 202);
        ids[sender]!.push(((await res.json()) as { id: string }).id);
      }
    }
    await waitFor('all six stored', async () => {
      const res = await fetch(`${app.url}/v1/messages?limit=100`, { headers: as(writer.key) });
      return ((await res.json()) as { items: unknown[] }).items.length === 6;
    });
  });
  after(() => app.close());

  const get = (path: string) => fetch(app.url + path, { headers: as(boundA.key) });
  /** B's ids never; B's name only in a refusal that echoes the query the client sent itself. */
  const neverB = (path: string, text: string, refused = false) => {
    if (!refused) assert.ok(!text.includes(B), `${path} shows sender B: ${text.slice(0, 300)}`);
    for (const id of ids[B]!) assert.ok(!text.includes(id), `${path} shows B's message ${id}`);
  };

  test('the list holds only A, on every page and with every filter', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const path: string = `/v1/messages?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await get(path);
      assert.equal(res.status, 200);
      const text = await res.text();
      neverB(path, text);
      const page = JSON.parse(text) as {
        items: Array<{ id: string; sender: string }>;
        next_cursor: string | null;
      };
      seen.push(...page.items.map((m) => m.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen.sort(), [...ids[A]!].sort());
    for (const q of ['since=0', 'until=2100-01-01T00:00:00Z', `sender=${A}`]) {
      const res = await get(`/v1/messages?${q}`);
      assert.equal(res.status, 200);
      neverB(q, await res.text());
    }
  });

  test('asking for B by name is 403; by id, 404 exactly as for an id never stored', async () => {
    await expectProblem(await get(`/v1/messages?sender=${B}`), 403, 'FORBIDDEN');
    const absent = await expectProblem(
      await get('/v1/messages/0190a6e4-0000-7000-8000-000000000000'),
      404,
      'NOT_FOUND',
    );
    for (const id of ids[B]!) {
      const p = await expectProblem(await get(`/v1/messages/${id}`), 404, 'NOT_FOUND');
      assert.equal(p.detail, absent.detail);
    }
    assert.equal((await get(`/v1/messages/${ids[A]![0]}`)).status, 200);
  });

  test("B's message status is `unknown`, exactly as an id never accepted", async () => {
    const status = async (id: string) => (await (await get(`/v1/messages/${id}/status`)).json()) as object;
    for (const id of ids[B]!) assert.deepEqual(await status(id), { id, status: 'unknown' });
    assert.equal(((await status(ids[A]![0]!)) as { status: string }).status, 'stored');
  });

  test('no GET route of the API shows B to the key, whatever its parameters', async () => {
    const doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }> }>>;
    };
    const routes = Object.entries(doc.paths).filter(([, ops]) => ops.get);
    assert.ok(routes.length >= 5, `${routes.length} GET routes`);
    for (const [template] of routes) {
      for (const id of [ids[B]![0]!, ids[A]![0]!]) {
        const path = template.replace('{id}', id).replace('{ip}', IP_B);
        for (const query of ['', `?sender=${B}`, '?limit=1000']) {
          const res = await get(path + query);
          assert.notEqual(res.status, 500, path);
          // The status route echoes the id the client sent (an `unknown` answer); nothing else of B.
          const text = await res.text();
          const shown = template.endsWith('/status') ? text.replace(`"id":"${id}"`, '"id":""') : text;
          neverB(path + query, shown, res.status >= 400 && query.includes(B));
        }
      }
    }
  });

  test('a bound key cannot hold the scopes that act on every sender', () => {
    for (const scope of ['privacy', 'admin'] as const) {
      const entry = { ...generateKey('ok', ['read']).entry, scopes: ['read', scope], senders: [A] };
      assert.throws(
        () => loadConfig({ INTAKE_API_KEYS: JSON.stringify([entry]) }, commandNamed('api')),
        (err: unknown) =>
          err instanceof ConfigError && /bound to senders may hold only ingest and read/.test(err.message),
      );
      assert.throws(() => generateKey('x', ['read', scope], [A]), /bound to senders/);
    }
    const cli = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
    assert.throws(
      () =>
        execFileSync(
          process.execPath,
          [cli, 'keys', 'create', '--name', 'x', '--scopes', 'privacy', '--senders', A],
          {
            stdio: 'pipe',
          },
        ),
      (err: { status?: number; stderr?: Buffer }) =>
        err.status === 1 && /bound to senders/.test(String(err.stderr)),
    );
  });
});
