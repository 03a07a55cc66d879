import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { freePort } from '../../harness/intake-process.ts';
import {
  type OtlpReceiver,
  type ReceivedSpan,
  SpanKind,
  startOtlpReceiver,
} from '../../harness/otlp-receiver.ts';
import type { Env } from '../../src/config/readers.ts';
import { type OtlpProtocol, readTracingConfig } from '../../src/config/tracing.ts';
import type { Logger } from '../../src/ops/logger.ts';
import { idOnlyTracing, newSpanId, newTraceId, type TraceContext } from '../../src/ops/tracing.ts';
import type { QueueTarget } from '../../src/ops/tracing-sdk.ts';
import { startTracing } from '../../src/ops/tracing-start.ts';

/**
 * The OpenTelemetry `Tracing` against a real OTLP/HTTP receiver that decodes with the official protos:
 * what intake exports, in both protocols, and what it does when the collector is not there.
 */

function logSink(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  const log: Logger = pino({}, sink);
  log.level = 'debug';
  return { log, lines };
}

/** Tracing as `intake start` builds it from this environment. */
function tracingFrom(env: Env, role: string, log: Logger, queue?: QueueTarget) {
  return startTracing(readTracingConfig(env), role, log, queue);
}

const parent: TraceContext = {
  traceId: newTraceId(),
  spanId: newSpanId(),
  sampled: true,
  traceState: 'vendor=abc',
};

for (const protocol of ['http/protobuf', 'http/json'] as OtlpProtocol[]) {
  describe(`export over ${protocol}`, () => {
    let receiver: OtlpReceiver;
    after(() => receiver?.close());

    test('request, publish and batch spans reach the collector with their parents, links and semconv attributes', async () => {
      receiver = await startOtlpReceiver();
      const { log } = logSink();
      const tracing = await tracingFrom(
        { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: protocol },
        'api,worker',
        log,
        { system: 'nats', destination: 'intake.messages' },
      );
      assert.equal(tracing.exporting, true);

      const request = tracing.startRequest(parent, 'POST /v1/messages', {
        'http.request.method': 'POST',
        'url.path': '/v1/messages',
        'http.route': '/v1/messages',
        'url.scheme': 'http',
        'client.address': undefined,
      });
      assert.equal(request.context.traceId, parent.traceId, 'the request span joins the caller trace');
      assert.notEqual(request.context.spanId, parent.spanId);
      assert.equal(request.context.sampled, true);
      assert.equal(request.context.traceState, 'vendor=abc', 'tracestate is carried on');

      const publish = tracing.startPublish(request.context, { 'messaging.batch.message_count': 1 });
      publish.end();
      request.setAttributes({ 'http.response.status_code': 202 });
      request.end();

      // A batch of two messages from two other traces.
      const m1: TraceContext = { traceId: newTraceId(), spanId: newSpanId(), sampled: true };
      const m2: TraceContext = { traceId: newTraceId(), spanId: newSpanId(), sampled: false };
      const batch = tracing.startBatch([m1, m2, publish.context], {});
      batch.fail(Object.assign(new Error('db down'), { code: 'ECONNREFUSED' }));
      batch.end();
      await tracing.shutdown();

      const spans = await receiver.waitForSpans('three spans', (s) => s.length >= 3);
      assert.equal(spans.length, 3);
      for (const s of spans) {
        assert.equal(s.encoding, protocol === 'http/json' ? 'json' : 'protobuf');
        assert.equal(s.resource['service.name'], 'intake');
        assert.match(String(s.resource['service.version']), /^\d+\.\d+\.\d+/);
        assert.equal(s.resource['intake.role'], 'api,worker');
      }
      const byName = (n: string) => {
        const s = spans.find((x) => x.name === n);
        assert.ok(s, `a span named ${n} in ${spans.map((x) => x.name).join(', ')}`);
        return s as ReceivedSpan;
      };

      const req = byName('POST /v1/messages');
      assert.equal(req.kind, SpanKind.SERVER);
      assert.equal(req.traceId, parent.traceId);
      assert.equal(req.parentSpanId, parent.spanId);
      assert.equal(req.spanId, request.context.spanId);
      assert.equal(req.traceState, 'vendor=abc');
      assert.equal(req.attributes['http.request.method'], 'POST');
      assert.equal(req.attributes['http.route'], '/v1/messages');
      assert.equal(req.attributes['http.response.status_code'], 202);
      assert.ok(!('client.address' in req.attributes), 'undefined attributes are left out');

      const pub = byName('send intake.messages');
      assert.equal(pub.kind, SpanKind.PRODUCER);
      assert.equal(pub.traceId, parent.traceId);
      assert.equal(pub.parentSpanId, request.context.spanId, 'publish is a child of the request span');
      assert.equal(pub.spanId, publish.context.spanId);
      assert.equal(pub.attributes['messaging.system'], 'nats');
      assert.equal(pub.attributes['messaging.operation.type'], 'send');
      assert.equal(pub.attributes['messaging.operation.name'], 'publish');
      assert.equal(pub.attributes['messaging.destination.name'], 'intake.messages');
      assert.equal(pub.attributes['messaging.batch.message_count'], 1);

      const bat = byName('process intake.messages');
      assert.equal(bat.kind, SpanKind.CONSUMER);
      assert.equal(bat.parentSpanId, '', 'the batch span is a root');
      assert.notEqual(bat.traceId, parent.traceId);
      assert.equal(bat.traceId, batch.context.traceId);
      assert.deepEqual(
        bat.links.map((l) => [l.traceId, l.spanId]),
        [m1, m2, publish.context].map((c) => [c.traceId, c.spanId]),
        'one link per message, to its context',
      );
      assert.equal(bat.attributes['messaging.batch.message_count'], 3);
      assert.equal(bat.attributes['messaging.operation.type'], 'process');
      assert.equal(bat.statusCode, 2, 'a failed batch has status ERROR');
      assert.equal(bat.attributes['error.type'], 'ECONNREFUSED');
      assert.equal(bat.events[0]?.name, 'exception');
    });
  });
}

test('a request without a parent starts a new trace, and an unsampled parent is not exported', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const tracing = await tracingFrom(
    { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.tracesUrl },
    'api',
    logSink().log,
  );
  const root = tracing.startRequest(undefined, 'GET /v1/messages/:id', {});
  root.end();
  const unsampled = tracing.startRequest({ ...parent, sampled: false }, 'GET /health', {});
  assert.equal(unsampled.context.traceId, parent.traceId);
  assert.equal(unsampled.context.sampled, false);
  unsampled.end();
  await tracing.shutdown();
  const spans = await receiver.waitForSpans('the root span', (s) => s.length >= 1);
  assert.deepEqual(
    spans.map((s) => s.name),
    ['GET /v1/messages/:id'],
  );
  assert.equal(spans[0]!.traceId, root.context.traceId);
  assert.equal(spans[0]!.parentSpanId, '');
  assert.match(root.context.traceId, /^[0-9a-f]{32}$/);
});

test('OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES reach the resource', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  // The SDK's env detector reads process.env itself.
  process.env.OTEL_SERVICE_NAME = 'intake-eu';
  process.env.OTEL_RESOURCE_ATTRIBUTES = 'deployment.environment.name=staging';
  t.after(() => {
    delete process.env.OTEL_SERVICE_NAME;
    delete process.env.OTEL_RESOURCE_ATTRIBUTES;
  });
  const tracing = await tracingFrom(
    { OTEL_EXPORTER_OTLP_ENDPOINT: `${receiver.url}/` },
    'worker',
    logSink().log,
  );
  tracing.startBatch([], {}).end();
  await tracing.shutdown();
  const [span] = await receiver.waitForSpans('one span', (s) => s.length >= 1);
  assert.equal(span!.resource['service.name'], 'intake-eu');
  assert.equal(span!.resource['deployment.environment.name'], 'staging');
  assert.equal(span!.resource['intake.role'], 'worker');
});

test('a collector that refuses: spans are dropped and the failure is logged once, not per export', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  receiver.answerWith(400); // not retryable: each export fails at once
  const { log, lines } = logSink();
  const tracing = await tracingFrom(
    { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
    'api',
    log,
  );
  // 1100 spans: the processor sends them in several exports (at most 512 spans each), each refused.
  for (let i = 0; i < 1100; i++) tracing.startRequest(parent, 'POST /v1/messages', {}).end();
  await tracing.shutdown();
  // At least two (three when the machine is idle: how the processor splits them varies under load).
  assert.ok(receiver.requests >= 2, `the exporter tried more than once: ${receiver.requests}`);
  assert.equal(receiver.spans.length, 0);
  const warnings = lines.filter((l) => String(l.msg).includes('span export failed'));
  assert.equal(warnings.length, 1, 'logged once, not once per failed export');
  assert.equal(warnings[0]!.level, 40);
  assert.equal(warnings[0]!.endpoint, receiver.tracesUrl);
});

test("credentials in the endpoint's user, password or query never reach a log line", async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  receiver.answerWith(400);
  const { log, lines } = logSink();
  const url = new URL(receiver.tracesUrl);
  const endpoint = `http://collector:PASSWORD-1@${url.host}${url.pathname}?api_key=TOKEN-2`;
  const tracing = await tracingFrom({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: endpoint }, 'api', log);
  tracing.startRequest(parent, 'POST /v1/messages', {}).end();
  await tracing.shutdown();
  assert.ok(receiver.requests >= 1, 'the exporter posted to the endpoint');
  const on = lines.find((l) => l.msg === 'tracing: exporting spans over OTLP');
  const failed = lines.find((l) => String(l.msg).includes('span export failed'));
  assert.equal(on?.endpoint, receiver.tracesUrl);
  assert.equal(failed?.endpoint, receiver.tracesUrl);
  const text = JSON.stringify(lines);
  assert.ok(!/PASSWORD-1|TOKEN-2|collector:/.test(text), text);
});

test('a collector that is down: starting spans never throws and shutdown returns', async (t) => {
  const port = await freePort();
  process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '300'; // read by the exporter itself
  t.after(() => {
    delete process.env.OTEL_EXPORTER_OTLP_TIMEOUT;
  });
  const { log, lines } = logSink();
  const tracing = await tracingFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }, 'api', log);
  // More than the processor's queue (2048) holds: the rest is dropped, not kept.
  for (let i = 0; i < 5000; i++) {
    const s = tracing.startRequest(parent, 'POST /v1/messages', { 'http.request.method': 'POST' });
    tracing.startPublish(s.context, {}).end();
    s.end();
  }
  await tracing.shutdown();
  const warnings = lines.filter((l) => String(l.msg).includes('span export failed'));
  assert.equal(warnings.length, 1);
  assert.ok(
    Number(warnings[0]!.droppedSpans) <= 2048,
    `at most a queue's worth dropped at export: ${warnings[0]!.droppedSpans}`,
  );
});

test('export off: startTracing returns idOnlyTracing', async () => {
  const { log } = logSink();
  for (const env of [
    {},
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'true' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_TRACES_EXPORTER: 'none' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: '' },
  ])
    assert.equal(await tracingFrom(env, 'api', log), idOnlyTracing, JSON.stringify(env));
});
