import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { defaultMaxConnections, loadConfig } from '../../src/config.ts';
import { RawConnection, requestHead } from '../clients/raw-http.ts';
import { type EdgeApp, startEdgeApp } from './edge-app.ts';

/**
 * Issue 22 item 6, connections: `CONNECT` is answered with a problem instead of a silent close, and past
 * INTAKE_MAX_CONNECTIONS a new connection gets a 503 instead of a share of a pod that slow clients hold.
 */
const json = { 'content-type': 'application/json' };

describe('connections: CONNECT is answered, INTAKE_MAX_CONNECTIONS caps what one process holds', () => {
  const LIMIT = 3;
  const ingest = generateKey('ingester', ['ingest']);
  let app: EdgeApp;
  before(async () => {
    app = await startEdgeApp('edge_connections', {
      INTAKE_MAX_CONNECTIONS: String(LIMIT),
      INTAKE_API_KEYS: JSON.stringify([ingest.entry]),
      INTAKE_LINGERING_TIME_MS: '30000',
      INTAKE_LINGERING_TIMEOUT_MS: '5000',
    });
  });
  afterEach(() => RawConnection.destroyAll());
  after(() => app?.close());

  /** The metric's value, read on a connection of its own (needs a free slot). */
  const metric = async (name: string) => {
    const text = await (await fetch(`${app.url}/metrics`, { headers: { connection: 'close' } })).text();
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  };

  test('CONNECT gets 405 METHOD_NOT_ALLOWED with Allow, then the connection closes', async () => {
    const c = await RawConnection.connect(app.url);
    await c.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
    const res = await c.response();
    assert.ok(res, 'an answer, not a silent close');
    assert.equal(res.status, 405);
    assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(res.headers.connection, 'close');
    assert.match(res.headers.allow ?? '', /GET.*POST/);
    const p = JSON.parse(res.body) as { code: string; status: number };
    assert.deepEqual([p.code, p.status], ['METHOD_NOT_ALLOWED', 405]);
    await waitFor('the server to end the connection', () => c.ended, 5000, 10);
    c.end();
    assert.equal((await c.closed).reset, false, 'closed cleanly');
  });

  test(`past ${LIMIT} connections (401'd clients trickling their body) a new one gets 503 SERVER_BUSY`, async () => {
    const refusedBefore = await metric('intake_http_connections_refused_total');
    // Each is refused with 401 before its body and keeps trickling it: the lingering close reads it
    // away for INTAKE_LINGERING_TIME_MS, holding the connection all that time.
    const holders: RawConnection[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const c = await RawConnection.connect(app.url);
      await c.write(requestHead('POST', '/v1/messages', { ...json, 'content-length': 10_000_000 }));
      assert.equal((await c.response())?.status, 401);
      holders.push(c);
    }
    const trickle = setInterval(() => {
      for (const c of holders) c.write('x').catch(() => {});
    }, 200);
    try {
      await waitFor('the holders counted', async () => (await app.connections()) === LIMIT, 5000, 10);
      const c = await RawConnection.connect(app.url);
      await c.write(requestHead('GET', '/livez', {}));
      const res = await c.response();
      assert.ok(res, 'an answer, not a silent close');
      assert.equal(res.status, 503);
      assert.equal(res.headers['retry-after'], '1');
      assert.equal(res.headers.connection, 'close');
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'SERVER_BUSY');
      await waitFor('the server to end the refused connection', () => c.ended, 5000, 10);
      c.end();
      assert.equal((await c.closed).reset, false, 'the refused connection closed cleanly');
      await waitFor('only the holders left', async () => (await app.connections()) === LIMIT, 5000, 10);
      assert.equal(holders.filter((h) => h.socket.destroyed).length, 0, 'the holders were not touched');
    } finally {
      clearInterval(trickle);
    }
    for (const c of holders) c.destroy();
    await app.allClosed();
    // Slots are free again: served, and the metrics say what happened.
    assert.equal((await fetch(`${app.url}/livez`, { headers: { connection: 'close' } })).status, 200);
    assert.equal(await metric('intake_http_connections_refused_total'), refusedBefore + 1);
    assert.equal(await metric('intake_http_connections_limit'), LIMIT);
    assert.equal(await metric('intake_http_connections_open'), 1, 'the scrape itself');
  });
});

test('INTAKE_MAX_CONNECTIONS defaults to the open-file limit, less room for the rest, within 64..10000', () => {
  const limits = (soft: string) =>
    `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 1048576              files\n`;
  assert.equal(defaultMaxConnections(limits('1024')), 821);
  assert.equal(defaultMaxConnections(limits('20000')), 10_000);
  assert.equal(defaultMaxConnections(limits('unlimited')), 10_000);
  assert.equal(defaultMaxConnections(limits('128')), 64);
  assert.equal(defaultMaxConnections(''), 821, 'no /proc: 1024 assumed');
  assert.equal(loadConfig({ INTAKE_MAX_CONNECTIONS: '7' }, commandNamed('api')).maxConnections, 7);
});
