import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';

/**
 * The intake client: sends messages so that none is lost and none is stored twice, whatever happens
 * between client and queue. Every logical send gets its own Idempotency-Key, reused on every retry, so
 * a retry after a 503, a reset connection, a timeout or an "outcome unknown" answer maps to the message
 * already accepted. Answers that cannot change on a retry (400, 401, 403, 404, 413, 415, 422) are
 * permanent: thrown at once, never retried.
 *
 *     const intake = new IntakeClient({ url: 'http://localhost:8080', apiKey: process.env.INTAKE_KEY });
 *     const { id } = await intake.send({ ts: 1530228282, sender: 'svc', message: { foo: 'bar' } });
 *     await intake.enqueue(m);   // batched with others sent within `lingerMs`
 *     await intake.close();      // sends what is still waiting
 *     await intake.status(id);   // { id, status: 'stored' | 'queued' | …, … }
 *     await intake.waitUntilStored(id, 10_000); // the stored status, or a NotStoredError
 */
export interface IntakeClientOptions {
  /** Base URL of the intake API, e.g. `https://intake.example.com`. */
  url: string;
  /** API key sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Gzip request bodies at least this large (bytes, default 1024); `false` never. */
  gzipMinBytes?: number | false;
  /** Deadline of one attempt (default 10 s). */
  timeoutMs?: number;
  /** Attempts per send before giving up (default 8), and the backoff between them. */
  retry?: { attempts?: number; baseMs?: number; maxMs?: number };
  /** Automatic batching for `enqueue()`: at most `maxMessages` per request, sent `lingerMs` after the first. */
  batch?: { maxMessages?: number; lingerMs?: number };
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
}

/** A message as the contract defines it (docs/contract.md §1). */
export interface Message {
  ts: number | string;
  sender: string;
  message: Record<string, unknown>;
  'sent-from-ip'?: string;
  priority?: number;
}

/**
 * W3C Trace Context to send with a request (the caller's current span), so the message joins the
 * caller's trace: intake stores its trace id with the row and answers with the `traceparent` of its own
 * span. The client checks only that a value can be sent as a header at all (printable ASCII): one that
 * cannot is left out, which starts a new trace just as intake does for any other invalid value.
 */
export interface TraceHeaders {
  traceparent?: string;
  tracestate?: string;
}

/** An RFC 9457 problem as intake answers it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: Array<{ pointer: string; detail: string }>;
  errors_total?: number;
  ids?: string[];
}

/** What became of an accepted message (`GET /v1/messages/{id}/status`, docs/contract.md). */
export interface MessageStatus {
  id: string;
  /**
   * `stored`, `queued` (on the Postgres queue, not stored yet), `dead_lettered` and `erased` are what
   * intake's database shows; `unknown` is everything it cannot show (never accepted, past retention,
   * another sender's, or on the JetStream queue and not stored yet).
   */
  status: 'stored' | 'queued' | 'dead_lettered' | 'erased' | 'unknown';
  stored_at?: string | null;
  received_at?: string;
  attempts?: number;
  failed_at?: string;
  erased_at?: string;
  /** `dead_lettered`: why; `unknown`: `database_unavailable` when intake could not ask its database. */
  reason?: string;
  /** `stored`, `queued`, `dead_lettered`: the W3C trace id it was sent under (null without one). */
  trace_id?: string | null;
}

/**
 * waitUntilStored() gave up: the message was dead-lettered or erased (it will never be stored), or
 * `timeoutMs` passed first. `last` is the last status intake answered (undefined if none did).
 */
export class NotStoredError extends Error {
  constructor(
    message: string,
    readonly outcome: 'dead_lettered' | 'erased' | 'timeout',
    readonly last: MessageStatus | undefined,
  ) {
    super(message);
    this.name = 'NotStoredError';
  }
}

/** A send that failed: `permanent` when retrying cannot help, else the retries ran out. */
export class IntakeError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly problem: Problem | undefined,
    readonly permanent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'IntakeError';
  }

  /** The problem's stable code (`INVALID_MESSAGE`, `QUEUE_FULL`, …), when the server answered one. */
  get code(): string | undefined {
    return this.problem?.code;
  }
}

/** Statuses a retry cannot change. */
const PERMANENT = new Set([400, 401, 403, 404, 405, 413, 414, 415, 422, 431]);

/** A successful answer: its JSON body and the `traceparent` intake answered with. */
interface Answer {
  body: unknown;
  traceparent?: string;
}

interface Waiting {
  message: Message;
  resolve: (r: { id: string }) => void;
  reject: (e: unknown) => void;
}

export class IntakeClient {
  private readonly base: string;
  private readonly fetch: typeof fetch;
  private readonly attempts: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly maxBatch: number;
  private readonly lingerMs: number;
  private waiting: Waiting[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: IntakeClientOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.attempts = Math.max(1, opts.retry?.attempts ?? 8);
    this.baseMs = opts.retry?.baseMs ?? 100;
    this.maxMs = opts.retry?.maxMs ?? 10_000;
    this.maxBatch = Math.min(1000, Math.max(1, opts.batch?.maxMessages ?? 100));
    this.lingerMs = opts.batch?.lingerMs ?? 10;
  }

  /**
   * Sends one message; resolves with its id once intake accepted it (202), and the `traceparent` of
   * intake's span for it (in the caller's trace when `trace` names one).
   */
  async send(message: Message, trace?: TraceHeaders): Promise<{ id: string; traceparent?: string }> {
    const { body, traceparent } = await this.post('/v1/messages', message, trace);
    return { id: (body as { id: string }).id, ...(traceparent ? { traceparent } : {}) };
  }

  /**
   * Sends up to 1,000 messages in one request, all or nothing; resolves with their ids, in order (every
   * message is in the request's trace).
   */
  async sendBatch(
    messages: Message[],
    trace?: TraceHeaders,
  ): Promise<{ ids: string[]; traceparent?: string }> {
    if (messages.length === 0) return { ids: [] };
    if (messages.length > 1000)
      throw new IntakeError('a batch holds at most 1000 messages', undefined, undefined, true);
    const { body, traceparent } = await this.post('/v1/messages/batch', { messages }, trace);
    const ids = (body as { items: Array<{ id: string }> }).items.map((i) => i.id);
    return { ids, ...(traceparent ? { traceparent } : {}) };
  }

  /**
   * Where message `id` is now (one GET, retried like a send on resets, timeouts, 429 and 5xx; a status
   * lookup changes nothing, so retrying is always safe). A malformed id or a key without `read` scope is
   * thrown at once as a permanent IntakeError.
   */
  async status(id: string): Promise<MessageStatus> {
    return (await this.request('GET', `/v1/messages/${encodeURIComponent(id)}/status`)).body as MessageStatus;
  }

  /**
   * Polls status(id) with backoff (50 ms doubling to 2 s, never past the deadline) until the message is
   * stored, and resolves with that status. Rejects with NotStoredError when it is dead-lettered or erased
   * (it will never be stored) or when `timeoutMs` passes first; `unknown` and `queued` are waited
   * through (on the JetStream queue a message is `unknown` until stored), and so are lookups that fail
   * for a moment. A permanent IntakeError (bad id, no `read` scope) is thrown at once.
   */
  async waitUntilStored(id: string, timeoutMs: number): Promise<MessageStatus & { status: 'stored' }> {
    // From JavaScript a missing timeout is `undefined`: the deadline would be NaN, and the loop would
    // poll without end, every attempt aborted before it starts (AbortSignal.timeout(NaN) throws).
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0))
      throw new TypeError(`waitUntilStored: timeoutMs must be a number of milliseconds (got ${timeoutMs})`);
    const deadline = Date.now() + timeoutMs;
    let last: MessageStatus | undefined;
    for (let delay = 50; ; delay = Math.min(2000, delay * 2)) {
      try {
        last = (
          await this.request('GET', `/v1/messages/${encodeURIComponent(id)}/status`, {
            attempts: 1,
            deadline,
          })
        ).body as MessageStatus;
      } catch (err) {
        if (err instanceof IntakeError && err.permanent) throw err;
      }
      if (last?.status === 'stored') return last as MessageStatus & { status: 'stored' };
      if (last?.status === 'dead_lettered' || last?.status === 'erased')
        throw new NotStoredError(
          `message ${id} will not be stored: ${last.status}${last.reason ? ` (${last.reason})` : ''}`,
          last.status,
          last,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new NotStoredError(
          `message ${id} not stored within ${timeoutMs} ms (last status: ${last?.status ?? 'none'})`,
          'timeout',
          last,
        );
      await sleep(Math.min(delay, left));
    }
  }

  /**
   * Queues a message for the next automatic batch (sent when `maxMessages` wait or `lingerMs` after the
   * first); resolves with its id once that batch was accepted.
   */
  enqueue(message: Message): Promise<{ id: string }> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ message, resolve, reject });
      if (this.waiting.length >= this.maxBatch) this.flushWaiting();
      else this.timer ??= setTimeout(() => this.flushWaiting(), this.lingerMs);
    });
  }

  /** Sends everything `enqueue()` holds and waits for every batch in flight. */
  async flush(): Promise<void> {
    this.flushWaiting();
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /** Same as flush(); the client holds no connections of its own. */
  close(): Promise<void> {
    return this.flush();
  }

  private flushWaiting(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.waiting.length) {
      const group = this.waiting.splice(0, this.maxBatch);
      const p = this.sendBatch(group.map((w) => w.message)).then(
        ({ ids }) => {
          for (const [i, w] of group.entries()) w.resolve({ id: ids[i]! });
        },
        (err) => {
          for (const w of group) w.reject(err);
        },
      );
      this.inFlight.add(p);
      p.finally(() => this.inFlight.delete(p));
    }
  }

  /** POSTs one logical send, retrying under one Idempotency-Key until accepted or permanently refused. */
  private post(path: string, payload: unknown, trace?: TraceHeaders): Promise<Answer> {
    return this.request('POST', path, { payload, trace });
  }

  /**
   * One logical request, retried until answered (202 for a POST, 200 for a GET) or permanently refused:
   * at most `attempts` tries, each cut short at `deadline` when one is given.
   */
  private async request(
    method: 'GET' | 'POST',
    path: string,
    opts: { payload?: unknown; attempts?: number; deadline?: number; trace?: TraceHeaders } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = {};
    // fetch refuses a header value with control or non-ASCII characters before sending anything: kept,
    // such a value would fail every attempt of the send as if intake could not be reached.
    const traceparent = headerValue(opts.trace?.traceparent);
    if (traceparent) {
      headers.traceparent = traceparent;
      const tracestate = headerValue(opts.trace?.tracestate);
      if (tracestate) headers.tracestate = tracestate;
    }
    let body: Buffer | undefined;
    if (method === 'POST') {
      body = Buffer.from(JSON.stringify(opts.payload));
      headers['content-type'] = 'application/json';
      headers['idempotency-key'] = randomUUID();
      const min = this.opts.gzipMinBytes ?? 1024;
      if (min !== false && body.length >= min) {
        body = gzipSync(body);
        headers['content-encoding'] = 'gzip';
      }
    }
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    const ok = method === 'POST' ? 202 : 200;
    const attempts = opts.attempts ?? this.attempts;
    let last: IntakeError | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      let res: Response;
      let text: string;
      const timeout = Math.max(
        1,
        Math.min(this.opts.timeoutMs ?? 10_000, (opts.deadline ?? Infinity) - Date.now()),
      );
      try {
        res = await this.fetch(this.base + path, {
          method,
          headers,
          ...(body ? { body } : {}),
          signal: AbortSignal.timeout(timeout),
        });
        // Inside the try: an answer cut off or stalled after its status line (a reset, a proxy's
        // timeout) is a transport failure like any other, retried under the same key.
        text = await res.text();
      } catch (err) {
        // Reset, refused, timed out: the request may or may not have arrived; the key makes a retry safe.
        last = new IntakeError(`cannot reach ${this.base}: ${describe(err)}`, undefined, undefined, false, {
          cause: err,
        });
        if (attempt < attempts) await this.backoff(attempt, undefined);
        continue;
      }
      if (res.status === ok) {
        const answer = parseJson(text);
        if (answer !== undefined)
          return { body: answer, traceparent: res.headers.get('traceparent') ?? undefined };
      }
      const problem = parseProblem(text);
      const permanent = PERMANENT.has(res.status);
      last = new IntakeError(
        `${res.status} ${problem?.code ?? ''}: ${problem?.detail ?? text.slice(0, 200)}`.trim(),
        res.status,
        problem,
        permanent,
      );
      if (permanent) throw last;
      if (attempt < attempts) await this.backoff(attempt, res.headers.get('retry-after'));
    }
    throw last ?? new IntakeError('no attempt was made', undefined, undefined, false);
  }

  /** Full-jitter exponential backoff, never shorter than the server's Retry-After. */
  private async backoff(attempt: number, retryAfter: string | null | undefined): Promise<void> {
    if (attempt >= this.attempts) return;
    const exp = Math.min(this.maxMs, this.baseMs * 2 ** (attempt - 1));
    let ms = Math.random() * exp;
    const after = retryAfterMs(retryAfter);
    if (after !== undefined) ms = Math.max(ms, Math.min(after, this.maxMs * 6));
    await sleep(ms);
  }
}

/** `value` if it can be sent as an HTTP header value (printable ASCII, spaces, tabs), else undefined. */
function headerValue(value: string | undefined): string | undefined {
  return value !== undefined && /^[\t\x20-\x7e]*$/.test(value) ? value : undefined;
}

/** The answer's JSON body; undefined when it is not JSON (a proxy's page, a cut body): then retried. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function parseProblem(text: string): Problem | undefined {
  try {
    const p = JSON.parse(text) as Problem;
    return typeof p === 'object' && p !== null && typeof p.code === 'string' ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
function retryAfterMs(v: string | null | undefined): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return 'no answer in time';
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}
