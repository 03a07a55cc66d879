import { randomHexPooled } from '../contract/random-pool.ts';

/**
 * The trace seam: what the HTTP edge, the queue and the worker call to take part in a W3C trace.
 *
 * Two implementations: `idOnlyTracing` below (the default: records nothing, exports nothing, costs a
 * random span id per span) and the OpenTelemetry one in src/ops/tracing-sdk.ts, loaded only when the
 * standard `OTEL_EXPORTER_OTLP_*` environment asks for export (docs/tracing.md). Callers never
 * import OpenTelemetry themselves, so that tracing off costs nothing measurable.
 */

/** A W3C trace context (traceparent + tracestate), in the form intake carries and stores. */
export interface TraceContext {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero: the span this context names. */
  spanId: string;
  /** The `sampled` trace flag. */
  sampled: boolean;
  /** The `tracestate` header as received (already validated), if any. */
  traceState?: string;
}

export type SpanAttributes = Record<string, string | number | boolean | undefined>;

export interface TraceSpan {
  /** This span's own context: what intake returns in `traceparent` and carries on the queue. */
  readonly context: TraceContext;
  setAttributes(attributes: SpanAttributes): void;
  /** Marks the span failed (status ERROR, the error recorded as an exception event). */
  fail(error: unknown): void;
  end(): void;
}

export interface Tracing {
  /** True when spans are exported somewhere (OTLP); false for `idOnlyTracing`. */
  readonly exporting: boolean;
  /**
   * The HTTP server span of one request: a child of the client's context when it sent a valid
   * `traceparent`, else the root of a new trace.
   */
  startRequest(parent: TraceContext | undefined, name: string, attributes: SpanAttributes): TraceSpan;
  /** The producer span of one publish to the queue (one call, one or many messages), child of `parent`. */
  startPublish(parent: TraceContext, attributes: SpanAttributes): TraceSpan;
  /**
   * The consumer span of the worker storing one batch: a new root, linked to each message's context
   * (one batch holds messages of many traces).
   */
  startBatch(links: TraceContext[], attributes: SpanAttributes): TraceSpan;
  /** Flushes what is pending and stops exporting. */
  shutdown(): Promise<void>;
}

function hex(bytes: number): string {
  return randomHexPooled(bytes);
}

export function newSpanId(): string {
  return hex(8);
}

export function newTraceId(): string {
  return hex(16);
}

class IdOnlySpan implements TraceSpan {
  constructor(readonly context: TraceContext) {}
  setAttributes(): void {}
  fail(): void {}
  end(): void {}
}

/** Tracing off: spans are ids only (so `traceparent` and `trace_id` still work), nothing is recorded. */
export const idOnlyTracing: Tracing = {
  exporting: false,
  startRequest(parent) {
    return new IdOnlySpan({
      traceId: parent?.traceId ?? newTraceId(),
      spanId: newSpanId(),
      sampled: parent?.sampled ?? false,
      traceState: parent?.traceState,
    });
  },
  startPublish(parent) {
    return new IdOnlySpan({ ...parent, spanId: newSpanId() });
  },
  startBatch() {
    return new IdOnlySpan({ traceId: newTraceId(), spanId: newSpanId(), sampled: false });
  },
  async shutdown() {},
};
