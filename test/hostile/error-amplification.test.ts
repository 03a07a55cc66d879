import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

/**
 * Error amplification: a small hostile body must never cost a large answer or a long stall. Measured
 * before the fix: 340,000 `{}` items → a 61 MB problem after 8.6 s; 90k extra keys → a 10 MB body.
 */
describe('error bodies stay small and cheap, whatever the input', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp('amplification', { roles: ['api'] });
  });
  after(() => app.close());

  test('a 1 MiB batch of 340,000 items is refused before it is even parsed, with a small body', async () => {
    const body = `{"messages":[${Array(340_000).fill('{}').join(',')}]}`;
    assert.ok(body.length < 1024 * 1024);
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    const started = performance.now();
    const res = await app.post('/v1/messages/batch', body);
    const ms = performance.now() - started;
    h.disable();
    const text = await res.clone().text();
    const p = await expectProblem(res, 400, 'JSON_TOO_COMPLEX');
    assert.ok(text.length < 4096, `problem body is ${text.length} bytes`);
    assert.match(p.detail, /more than 100000 JSON objects and arrays/);
    // The server runs in this process: its event loop is this one.
    assert.ok(h.max / 1e6 < 500, `event loop blocked ${Math.round(h.max / 1e6)} ms`);
    assert.ok(ms < 2000, `took ${Math.round(ms)} ms`);
  });

  test('a batch of 5,000 items is refused for its length before any item is validated', async () => {
    const res = await app.post('/v1/messages/batch', `{"messages":[${Array(5000).fill('{}').join(',')}]}`);
    const text = await res.clone().text();
    const p = await expectProblem(res, 400, 'INVALID_MESSAGE');
    assert.deepEqual(p.errors, [{ pointer: '/messages', detail: 'must have at most 1000 items (got 5000)' }]);
    assert.ok(text.length < 4096);
  });

  test('an object with 90,000 keys is refused before it is parsed', async () => {
    const extra = Object.fromEntries(Array.from({ length: 90_000 }, (_, i) => [`k${i}`, 1]));
    const body = JSON.stringify({ ts: 1, sender: 's', message: { a: 1 }, ...extra });
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    const res = await app.post('/v1/messages', body);
    h.disable();
    const p = await expectProblem(res, 400, 'JSON_TOO_COMPLEX');
    assert.match(p.detail, /more than 10000 fields/);
    assert.ok(h.max / 1e6 < 200, `event loop blocked ${Math.round(h.max / 1e6)} ms`);
  });

  test('a message with 9,000 extra keys lists at most 100 violations plus the total', async () => {
    const extra = Object.fromEntries(Array.from({ length: 9_000 }, (_, i) => [`k${i}`, 1]));
    const body = JSON.stringify({ ts: 1, sender: 's', message: { a: 1 }, ...extra });
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    const res = await app.post('/v1/messages', body);
    h.disable();
    assert.ok(h.max / 1e6 < 500, `event loop blocked ${Math.round(h.max / 1e6)} ms`);
    const text = await res.clone().text();
    const p = await expectProblem(res, 400, 'INVALID_MESSAGE');
    assert.equal(p.errors?.length, 100);
    assert.equal(p.errors_total, 9_000);
    assert.match(p.detail, /9000 violations/);
    assert.ok(text.length < 32 * 1024, `problem body is ${text.length} bytes`);
  });

  test('a 1000-item batch where every item is wrong in several ways stays under 100 listed violations', async () => {
    const items = Array.from({ length: 1000 }, () => ({ ts: -1, sender: '', message: [], x: 1 }));
    const res = await app.post('/v1/messages/batch', { messages: items });
    const p = await expectProblem(res, 400, 'INVALID_MESSAGE');
    assert.equal(p.errors?.length, 100);
    assert.equal(p.errors_total, 4000);
    assert.match(p.errors?.[0]?.pointer ?? '', /^\/messages\/0\//);
  });

  test('four huge hostile requests at once keep the process responsive', async () => {
    const body = `{"messages":[${Array(130_000).fill('{"a":1}').join(',')}]}`;
    assert.ok(body.length < 1024 * 1024);
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    const rss = process.memoryUsage().rss;
    const all = await Promise.all(Array.from({ length: 4 }, () => app.post('/v1/messages/batch', body)));
    h.disable();
    for (const r of all) assert.equal(r.status, 400);
    await Promise.all(all.map((r) => r.arrayBuffer()));
    assert.ok(h.max / 1e6 < 500, `event loop blocked ${Math.round(h.max / 1e6)} ms`);
    const grew = (process.memoryUsage().rss - rss) / 1048576;
    assert.ok(grew < 300, `RSS grew ${Math.round(grew)} MiB`);
  });
});
