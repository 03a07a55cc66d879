import { newMessageId, uuidv7Time } from '../contract/message-id.ts';
import type { IncomingMessage } from '../contract/message-schema.ts';
import type { QueuedMessage } from '../contract/queued-message.ts';
import { formatTraceparent } from '../contract/trace-context.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { TraceContext, TraceSpan, Tracing } from '../ops/tracing.ts';
import type { IpProtector } from '../privacy/ip-protector.ts';
import { fieldsToProtect, protectFields, withPseudonyms } from '../privacy/message-fields.ts';
import {
  type PublishRequest,
  type PublishResult,
  type QueueProducer,
  QueueUnavailableError,
} from '../queue/queue.ts';

/**
 * The write path between the HTTP edge and the queue, the same for every ingest route (single, batch,
 * NDJSON): assign each message a UUIDv7, protect its personal data, and publish it under ONE deadline
 * that the queue itself enforces (an AbortSignal passed down), so the answer the edge gives is the
 * queue's own: accepted, not accepted, or outcome unknown (queue/errors.ts).
 */
export interface IngestOptions {
  queue: QueueProducer;
  ipProtector: IpProtector;
  metrics: Metrics;
  /** Top-level `message` keys that are personal data (INTAKE_PII_MESSAGE_FIELDS). */
  piiFields: readonly string[];
  /** INTAKE_PUBLISH_TIMEOUT_MS: how long the queue may take to confirm. */
  publishTimeoutMs: number;
  /** Starts the publish span of each call; its context travels with every message (docs/tracing.md). */
  tracing: Tracing;
}

/** Who sent the messages, for the Idempotency-Key's scope. */
export interface IngestContext {
  /** The API key's name, or undefined when auth is off (all clients share one scope). */
  client: string | undefined;
  /** The request's Idempotency-Key header, if any (validated by the edge: 1 to 255 characters). */
  idempotencyKey: string | undefined;
  /** True for the batch routes: the key then names the batch, and item i is `<key>\n<i>`. */
  batch: boolean;
  /** Each body's position in the request, when only some of its items are accepted (default: 0..n-1). */
  indexes?: number[];
  /**
   * The request span's context (the parent of the publish span); absent for callers outside a request
   * span, whose messages then carry no trace context.
   */
  trace?: TraceContext;
}

/** The trace fields every message of one publish carries: the publish span's context. */
type TraceFields = Pick<QueuedMessage, 'traceparent' | 'tracestate'>;

export class Ingest {
  constructor(private readonly opts: IngestOptions) {}

  /** How long the queue may take to confirm (INTAKE_PUBLISH_TIMEOUT_MS). */
  get publishTimeoutMs(): number {
    return this.opts.publishTimeoutMs;
  }

  /**
   * Publishes validated messages as one unit (all accepted or none) and resolves with one result per
   * message, in order, once the queue holds them durably. With an Idempotency-Key, message i of the
   * request is known by `<client>\n<key>\n<i>` and fingerprinted, so a retry returns the same ids and a
   * reuse with a different body is refused.
   */
  async accept(bodies: IncomingMessage[], ctx: IngestContext): Promise<PublishResult[]> {
    const scope =
      ctx.idempotencyKey === undefined ? undefined : `${ctx.client ?? 'anonymous'}\n${ctx.idempotencyKey}`;
    const span = ctx.trace
      ? this.opts.tracing.startPublish(ctx.trace, {
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'publish',
          'messaging.batch.message_count': bodies.length > 1 ? bodies.length : undefined,
        })
      : undefined;
    const trace = span ? traceFields(span) : {};
    const requests: PublishRequest[] = [];
    let results: PublishResult[];
    let started = 0;
    try {
      for (const [i, body] of bodies.entries()) {
        // Normally no wait: only when this process's data key is near its encryption budget (data-keys.ts).
        const wait = this.opts.ipProtector.reserve(this.encryptionsFor(body));
        if (wait) await wait.catch(noDataKey);
        const message = this.toQueued(body, trace);
        if (scope === undefined) {
          requests.push({ message });
          continue;
        }
        requests.push({
          message,
          idempotencyKey: ctx.batch ? `${scope}\n${ctx.indexes?.[i] ?? i}` : scope,
          fingerprint: this.fingerprint(message),
          subject: message.ip?.pseudonym,
          rebind: (id) => this.toQueued(body, trace, id),
        });
      }
      started = performance.now();
      results = await withDeadline(this.opts.publishTimeoutMs, (signal) =>
        this.opts.queue.publish(requests, signal),
      );
      if (span && results.length === 1) span.setAttributes({ 'messaging.message.id': results[0]!.id });
    } catch (err) {
      span?.fail(err);
      throw err;
    } finally {
      span?.end();
    }
    const { metrics } = this.opts;
    metrics.publishSeconds.observe((performance.now() - started) / 1000);
    let duplicates = 0;
    for (const r of results) if (r.duplicate) duplicates++;
    if (duplicates) metrics.duplicates.inc(duplicates);
    if (results.length > duplicates) metrics.accepted.inc(results.length - duplicates);
    return results;
  }

  /**
   * Validated body → the queued form: id assigned (or given, for a retry published under the original
   * id), IP and declared fields replaced by pseudonym + ciphertext bound to that id.
   */
  private toQueued(body: IncomingMessage, trace: TraceFields, id = newMessageId()): QueuedMessage {
    const { ipProtector, piiFields } = this.opts;
    const m: QueuedMessage = {
      v: 1,
      id,
      // From the id itself, so that id and partition key can never disagree.
      received_at: uuidv7Time(id).toISOString(),
      ts: Number(body.ts),
      sender: body.sender,
      message: protectFields(ipProtector, piiFields, body.message, id),
      priority: body.priority ?? null,
    };
    const ip = body['sent-from-ip'];
    if (ip !== undefined) m.ip = ipProtector.protect(ip, { id, field: 'sent-from-ip' });
    // Not part of the fingerprint: a retry of the same body under another trace is the same request.
    if (trace.traceparent !== undefined) m.traceparent = trace.traceparent;
    if (trace.tracestate !== undefined) m.tracestate = trace.tracestate;
    return m;
  }

  private encryptionsFor(body: IncomingMessage): number {
    return (body['sent-from-ip'] === undefined ? 0 : 1) + fieldsToProtect(this.opts.piiFields, body.message);
  }

  /**
   * A keyed digest (privacy/ip-protector.ts) of one message in its protected form, compared when an
   * Idempotency-Key is reused: the IP and declared fields as their pseudonyms, never in clear, so the
   * stored fingerprint tells a reader of the database or of NATS nothing it could confirm a guess with.
   */
  private fingerprint(m: QueuedMessage): string {
    return this.opts.ipProtector.fingerprint(
      JSON.stringify([m.ts, m.sender, withPseudonyms(m.message), m.priority, m.ip?.pseudonym ?? null]),
    );
  }
}

function traceFields(span: TraceSpan): TraceFields {
  const { context } = span;
  return context.traceState === undefined
    ? { traceparent: formatTraceparent(context) }
    : { traceparent: formatTraceparent(context), tracestate: context.traceState };
}

const noDataKey = (err: unknown): never => {
  throw new QueueUnavailableError('no data key with room to encrypt personal data; nothing was queued', {
    cause: err,
  });
};

/**
 * Runs `fn` with a signal that aborts after `ms`, and clears the timer as soon as `fn` settles.
 * Not AbortSignal.timeout(): its timer outlives the request, and when it fires (`ms` later, for every
 * request) it builds a DOMException with a stack trace, which with the signal's weak-reference
 * bookkeeping the bench's profile showed on every message (docs/capacity-plan.md#measurements-behind-choices-in-the-code).
 */
async function withDeadline<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), ms);
  try {
    return await fn(deadline.signal);
  } finally {
    clearTimeout(timer);
  }
}
