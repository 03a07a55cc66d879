import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import {
  type OtlpReceiver,
  type ReceivedSpan,
  SpanKind,
  startOtlpReceiver,
} from '../../harness/otlp-receiver.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * OTLP export end to end, on both queues, real PostgreSQL, NATS and HTTP: intake started with the
 * OTEL_* environment pointing at the test receiver. The `traceparent` a client sends is the trace of
 * the stored row (`trace_id`) and of the exported request and publish spans, and the worker's batch
 * span, a root of its own, links to the message's publish context.
 */
const TRACE = '0af7651916cd43dd8448eb211c80319c';
const PARENT = 'b7ad6b7169203331';

for (const queue of ['postgres', 'nats'] as const) {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    describe(`export end to end: ${queue} queue, ${protocol}`, () => {
      let app: TestApp;
      let receiver: OtlpReceiver;
      let server: NatsServer | undefined;
      let db: pg.Client;

      before(async () => {
        receiver = await startOtlpReceiver();
        let env: Record<string, string> = {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_BSP_SCHEDULE_DELAY: '100', // the test waits for spans, not for the 5 s default
        };
        if (queue === 'nats') {
          server = await startNatsServer();
          env = { ...env, ...natsEnv(server, uniqueStream('otel')) };
        }
        app = await startTestApp(`otel_${queue}`, { env });
        db = new pg.Client({ connectionString: app.db.url });
        await db.connect();
      });
      after(async () => {
        await db?.end();
        await app?.close();
        await server?.stop();
        await receiver?.close();
      });

      test('the traceparent sent in is the trace of the row and of the request and publish spans; the batch links to it', async () => {
        assert.equal(app.running.tracing.exporting, true);
        const res = await app.post(
          '/v1/messages',
          { ts: 1, sender: 'otel', message: { a: 1 } },
          { traceparent: `00-${TRACE}-${PARENT}-01` },
        );
        assert.equal(res.status, 202);
        const answered = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(res.headers.get('traceparent') ?? '');
        assert.ok(answered, `a traceparent on the 202: ${res.headers.get('traceparent')}`);
        assert.equal(answered[1], TRACE);
        const requestSpanId = answered[2]!;
        const { id } = (await res.json()) as { id: string };

        const row = await waitFor(`message ${id} stored`, async () => {
          const r = await fetch(`${app.url}/v1/messages/${id}`);
          return r.status === 200 ? ((await r.json()) as { trace_id: string | null }) : undefined;
        });
        assert.equal(row.trace_id, TRACE, 'the read API returns the trace');
        const stored = await db.query('SELECT trace_id FROM intake.messages WHERE id = $1', [id]);
        assert.equal(stored.rows[0]?.trace_id, TRACE, 'the row stores the trace');

        const find = (what: string, pick: (s: ReceivedSpan) => boolean) =>
          receiver
            .waitForSpans(what, (spans) => spans.some(pick))
            .then((spans) => spans.find(pick) as ReceivedSpan);
        const request = await find('the request span', (s) => s.spanId === requestSpanId);
        assert.equal(request.kind, SpanKind.SERVER);
        assert.equal(request.traceId, TRACE);
        assert.equal(request.parentSpanId, PARENT, "a child of the caller's span");
        assert.equal(request.attributes['http.request.method'], 'POST');
        assert.equal(request.attributes['http.route'], '/v1/messages');
        assert.equal(request.attributes['http.response.status_code'], 202);
        assert.equal(request.resource['service.name'], 'intake');
        assert.equal(request.encoding, protocol === 'http/json' ? 'json' : 'protobuf');

        const publish = await find(
          'the publish span',
          (s) => s.kind === SpanKind.PRODUCER && s.parentSpanId === requestSpanId,
        );
        assert.equal(publish.traceId, TRACE);
        assert.equal(publish.attributes['messaging.system'], queue === 'nats' ? 'nats' : 'postgresql');
        assert.equal(publish.attributes['messaging.operation.type'], 'send');
        assert.ok(publish.attributes['messaging.destination.name']);

        const batch = await find(
          'the batch span linked to the message',
          (s) => s.kind === SpanKind.CONSUMER && s.links.some((l) => l.traceId === TRACE),
        );
        assert.equal(batch.parentSpanId, '', 'the batch span is a root of its own');
        assert.notEqual(batch.traceId, TRACE);
        const link = batch.links.find((l) => l.traceId === TRACE)!;
        assert.equal(link.spanId, publish.spanId, "linked to the message's context: its publish span");
        assert.equal(batch.attributes['messaging.operation.type'], 'process');
        assert.ok(Number(batch.attributes['messaging.batch.message_count']) >= 1);
      });
    });
  }
}
