import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { RawConnection, requestHead } from '../clients/raw-http.ts';
import { type EdgeApp, startEdgeApp } from './edge-app.ts';

/**
 * Issue 8 item 8: INTAKE_HEADERS_TIMEOUT_MS and INTAKE_REQUEST_TIMEOUT_MS are enforced when they
 * expire (Node alone checks every 30 s, so 1 s fired anywhere up to 31 s), with a problem+json 408.
 * Raw sockets play the slow clients.
 */
const HEADERS_MS = 1000;
const REQUEST_MS = 2000;
const ok = JSON.stringify({ ts: 1530228282, sender: 's', message: { a: 1 } });

describe('slow clients get a 408 when their timeout expires', () => {
  let app: EdgeApp;
  const queued = () => app.queued();
  /** Messages that reached the ingest route (its preValidation hook counts them). */
  // A refused request counts as received and rejected (loss accounting); one that reached the route
  // with this valid body would have been accepted.
  const accepted = async () => (await app.app.running.metrics.accepted.get()).values[0]?.value ?? 0;

  before(async () => {
    app = await startEdgeApp('slow', {
      INTAKE_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
      INTAKE_REQUEST_TIMEOUT_MS: String(REQUEST_MS),
    });
  });
  afterEach(() => RawConnection.destroyAll());
  after(() => app?.close());

  /** Sends `text` one byte every 100 ms; `stop()` ends that and returns what was not sent yet. */
  function trickle(c: RawConnection, text: string): () => string {
    let i = 0;
    const t = setInterval(() => {
      if (i < text.length) c.write(text[i++]!).catch(() => {});
    }, 100);
    return () => {
      clearInterval(t);
      return text.slice(i);
    };
  }

  function assert408(res: Awaited<ReturnType<RawConnection['response']>>, expectedMs: number) {
    assert.equal(res?.status, 408);
    assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(res.headers.connection, 'close');
    const p = JSON.parse(res.body) as { code: string; status: number; type: string };
    assert.equal(p.code, 'REQUEST_TIMEOUT');
    assert.equal(p.status, 408);
    assert.equal(p.type, 'urn:intake:problem:request-timeout');
    // Near the configured time: Node's own check would have fired up to 30 s late.
    assert.ok(res.at >= expectedMs - 50 && res.at < expectedMs * 1.5, `408 after ${res.at} ms`);
  }

  test('headers sent too slowly: 408 at the headers timeout, and the request is never served', async () => {
    const before = await queued();
    const c = await RawConnection.connect(app.url);
    const head = requestHead('POST', '/v1/messages', {
      'content-type': 'application/json',
      'content-length': ok.length,
    });
    const stop = trickle(c, head); // ~10 s worth of bytes
    assert408(await c.response(HEADERS_MS * 3), HEADERS_MS);
    // The rest arrives late: it must not be parsed into a request and acted upon.
    await c.write(stop() + ok).catch(() => {});
    c.end();
    assert.equal(await c.response(500), undefined, 'nothing more is answered');
    await c.closed;
    assert.equal(await queued(), before);
  });

  test('a connection that sends nothing: 408 at the headers timeout', async () => {
    const c = await RawConnection.connect(app.url);
    assert408(await c.response(HEADERS_MS * 3), HEADERS_MS);
    c.destroy();
  });

  test('a body sent too slowly: 408 at the request timeout, and the message is not queued', async () => {
    const before = await queued();
    const routed = await accepted();
    const c = await RawConnection.connect(app.url);
    await c.write(
      requestHead('POST', '/v1/messages', {
        'content-type': 'application/json',
        'content-length': ok.length,
      }),
    );
    const stop = trickle(c, ok); // ~6 s worth of bytes
    assert408(await c.response(REQUEST_MS * 3), REQUEST_MS);
    // The body completes after the 408: the request must not go on to the route.
    await c.write(stop()).catch(() => {});
    c.end();
    await app.allClosed();
    c.destroy();
    assert.equal(await accepted(), routed, 'the late body did not reach the route');
    assert.equal(await queued(), before);
  });

  test('a client that is quick enough is served, on the same connection, after its first request', async () => {
    const c = await RawConnection.connect(app.url);
    for (let i = 0; i < 2; i++) {
      await c.write(
        requestHead('POST', '/v1/messages', {
          'content-type': 'application/json',
          'content-length': ok.length,
        }),
      );
      await c.write(ok);
      assert.equal((await c.response())?.status, 202);
    }
    c.destroy();
  });
});
