import { readFileSync } from 'node:fs';
import {
  type Attributes,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, TraceState } from '@opentelemetry/core';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import {
  ATTR_ERROR_TYPE,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from '@opentelemetry/semantic-conventions';
import {
  ATTR_MESSAGING_BATCH_MESSAGE_COUNT,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  MESSAGING_OPERATION_TYPE_VALUE_PROCESS,
  MESSAGING_OPERATION_TYPE_VALUE_SEND,
} from '@opentelemetry/semantic-conventions/incubating';
import { endpointForLog, type SamplerConfig, type TracingConfig } from '../config.ts';
import type { Logger } from './logger.ts';
import type { SpanAttributes, TraceContext, TraceSpan, Tracing } from './tracing.ts';

/**
 * The `Tracing` seam (src/ops/tracing.ts) implemented with the OpenTelemetry JS SDK: real spans,
 * batched (BatchSpanProcessor) and exported over OTLP/HTTP. Loaded only by `startTracing` when the
 * environment asks for export (tracing-start.ts), so nothing here is imported while export is off.
 *
 * Span shapes follow the OpenTelemetry semantic conventions: the request is a SERVER span, the publish
 * a PRODUCER `send` span, the worker's store of a batch a CONSUMER `process` span, a new root linked to
 * the context of every message it holds (one batch holds messages of many traces).
 */

/** Where intake's queue sends: the messaging attributes of publish and batch spans, unless the caller sets them. */
export interface QueueTarget {
  /** `messaging.system`: `nats` for JetStream, `postgresql` for the Postgres queue. */
  system: string;
  /** `messaging.destination.name`: the subject, or the queue table. */
  destination: string;
}

export interface OtelTracingOptions {
  config: Extract<TracingConfig, { export: true }>;
  /** `intake.role` on the resource: which roles this process runs (`api`, `worker`, `api,worker`). */
  role: string;
  log: Logger;
  queue?: QueueTarget;
}

/** A failed export is logged at most once per this long, with what was dropped since. */
export const EXPORT_FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * Links kept on one batch span: one per message, and a batch holds up to INTAKE_WORKER_BATCH_SIZE
 * (at most 10,000) messages. The SDK's default of 128 would silently drop most of them.
 */
const MAX_LINKS = 10_000;

export async function createOtelTracing(options: OtelTracingOptions): Promise<Tracing> {
  const { config, role, log, queue } = options;
  // Only the one exporter asked for is loaded.
  const { OTLPTraceExporter } =
    config.protocol === 'http/json'
      ? await import('@opentelemetry/exporter-trace-otlp-http')
      : await import('@opentelemetry/exporter-trace-otlp-proto');
  // The exporter reads OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _TIMEOUT, _COMPRESSION and the certificate
  // files from the environment itself; the URL is given so that it is the one tracing-config.ts checked.
  const exporter = new LoggedExporter(
    new OTLPTraceExporter({ url: config.endpoint }),
    log,
    endpointForLog(config.endpoint),
  );

  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (read by the SDK's env detector) win over these.
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: 'intake',
    [ATTR_SERVICE_VERSION]: packageVersion(),
    'intake.role': role,
  }).merge(detectResources({ detectors: [envDetector] }));

  const provider = new TracerProvider({
    resource,
    sampler: sampler(config.sampler),
    spanLimits: { linkCountLimit: MAX_LINKS },
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        // Bounded: with the collector down, spans beyond this are dropped, never held.
        maxQueueSize: config.maxQueueSize,
        maxExportBatchSize: Math.min(512, config.maxQueueSize),
        scheduledDelayMillis: config.scheduleDelayMs,
      }),
    ],
  });
  const tracer = provider.getTracer('intake', packageVersion());
  const messaging = (operation: string, type: string): Attributes =>
    queue
      ? {
          [ATTR_MESSAGING_SYSTEM]: queue.system,
          [ATTR_MESSAGING_DESTINATION_NAME]: queue.destination,
          [ATTR_MESSAGING_OPERATION_NAME]: operation,
          [ATTR_MESSAGING_OPERATION_TYPE]: type,
        }
      : { [ATTR_MESSAGING_OPERATION_NAME]: operation, [ATTR_MESSAGING_OPERATION_TYPE]: type };
  const destination = queue ? ` ${queue.destination}` : '';

  return {
    exporting: true,
    startRequest(parent, name, attributes) {
      const ctx = parent ? trace.setSpanContext(ROOT_CONTEXT, spanContextOf(parent, true)) : ROOT_CONTEXT;
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: clean(attributes) }, ctx);
      return new OtelSpan(span);
    },
    startPublish(parent, attributes) {
      // The parent is this process's own request span, hence not remote.
      const ctx = trace.setSpanContext(ROOT_CONTEXT, spanContextOf(parent, false));
      const span = tracer.startSpan(
        `send${destination}`,
        {
          kind: SpanKind.PRODUCER,
          attributes: { ...messaging('publish', MESSAGING_OPERATION_TYPE_VALUE_SEND), ...clean(attributes) },
        },
        ctx,
      );
      return new OtelSpan(span);
    },
    startBatch(links, attributes) {
      const spanLinks: Link[] = links.map((l) => ({ context: spanContextOf(l, true) }));
      const span = tracer.startSpan(
        `process${destination}`,
        {
          kind: SpanKind.CONSUMER,
          root: true,
          links: spanLinks,
          attributes: {
            ...messaging('store', MESSAGING_OPERATION_TYPE_VALUE_PROCESS),
            [ATTR_MESSAGING_BATCH_MESSAGE_COUNT]: links.length,
            ...clean(attributes),
          },
        },
        ROOT_CONTEXT,
      );
      return new OtelSpan(span);
    },
    async shutdown() {
      // Flushes what the batch processor holds (bounded by the exporter's timeout), then stops.
      await provider.shutdown().catch((err: unknown) => log.warn({ err }, 'tracing: shutdown failed'));
    },
  };
}

class OtelSpan implements TraceSpan {
  readonly context: TraceContext;
  constructor(private readonly span: Span) {
    const sc = span.spanContext();
    this.context = {
      traceId: sc.traceId,
      spanId: sc.spanId,
      sampled: (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED,
      traceState: sc.traceState?.serialize() || undefined,
    };
  }
  setAttributes(attributes: SpanAttributes): void {
    this.span.setAttributes(clean(attributes));
  }
  fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof Error) this.span.recordException(error);
    const type = (error as { code?: unknown })?.code;
    this.span.setAttribute(
      ATTR_ERROR_TYPE,
      typeof type === 'string' ? type : error instanceof Error ? error.name : 'Error',
    );
    this.span.setStatus({ code: SpanStatusCode.ERROR, message });
  }
  end(): void {
    this.span.end();
  }
}

function spanContextOf(c: TraceContext, isRemote: boolean): SpanContext {
  return {
    traceId: c.traceId,
    spanId: c.spanId,
    traceFlags: c.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote,
    traceState: c.traceState ? new TraceState(c.traceState) : undefined,
  };
}

/** The seam allows `undefined` values (an attribute not known for this request); OpenTelemetry drops them with a warning. */
function clean(attributes: SpanAttributes): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(attributes)) if (v !== undefined) out[k] = v;
  return out;
}

function sampler(c: SamplerConfig): Sampler {
  switch (c.name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(c.ratio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(c.ratio) });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

let version: string | undefined;
function packageVersion(): string {
  version ??= (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
  return version;
}

/**
 * The OTLP exporter, with its failures logged: a collector that is down or refuses must never fail a
 * request or crash intake, so a failed export drops its spans (the batch processor's queue stays
 * bounded) and is logged at most once a minute with how many spans were dropped since.
 */
class LoggedExporter implements SpanExporter {
  private failedSpans = 0;
  private failedExports = 0;
  private lastLogAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Logger,
    private readonly endpoint: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    try {
      this.inner.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) this.failed(spans.length, result.error);
        done(result);
      });
    } catch (err) {
      this.failed(spans.length, err);
      done({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  private failed(spans: number, err: unknown): void {
    this.failedSpans += spans;
    this.failedExports += 1;
    const now = Date.now();
    if (now - this.lastLogAt < EXPORT_FAILURE_LOG_INTERVAL_MS) return;
    this.lastLogAt = now;
    this.log.warn(
      {
        err,
        endpoint: this.endpoint,
        droppedSpans: this.failedSpans,
        failedExports: this.failedExports,
      },
      'tracing: span export failed; spans dropped (logged at most once a minute)',
    );
    this.failedSpans = 0;
    this.failedExports = 0;
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}
