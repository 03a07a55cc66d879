import { QueueOverloadedError, QueueUnavailableError } from './errors.ts';

/**
 * Groups concurrent submissions into one flush: a flush starts when `maxBatch` items wait or `lingerMs`
 * after the first arrived, and at most `concurrency` flushes run at once. Each caller's promise settles
 * with its own item's result once the flush it was part of has finished. This turns one commit (or one
 * replicated ack) per HTTP request into one per batch, the way Kafka producers batch with linger.ms.
 * No library offers this shape (a bounded, per-item-result micro-batcher with backpressure), hence here.
 *
 * A submission may carry an AbortSignal (the caller's deadline): if it aborts while the item still waits
 * for its flush, the item is taken out and rejected with QueueUnavailableError, which is true because it
 * was never handed to the queue. Once its flush has started, the flush decides its outcome.
 */
export interface GroupCommitOptions<Req, Res> {
  lingerMs: number;
  /** Most weight (messages) in one flush; an item heavier than this still goes, alone. */
  maxBatch: number;
  /** Weight waiting or in flight beyond this is refused at once (bounded memory, fast 503). */
  maxPending: number;
  concurrency: number;
  flush: (items: Req[]) => Promise<Res[]>;
  /** Weight of an item (default 1): an HTTP batch counts its messages. */
  weight?: (item: Req) => number;
  /**
   * Keys that must not appear twice in one flush (Idempotency-Keys): an item sharing one with an item
   * already in the flush waits for the next flush, so the flush sees every key once.
   */
  keys?: (item: Req) => readonly string[];
}

interface Pending<Req, Res> {
  item: Req;
  weight: number;
  resolve: (r: Res) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class GroupCommit<Req, Res> {
  private queue: Pending<Req, Res>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  private pending = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly opts: GroupCommitOptions<Req, Res>) {}

  /** Weight accepted and not yet settled. */
  get size(): number {
    return this.pending;
  }

  submit(item: Req, signal?: AbortSignal): Promise<Res> {
    if (signal?.aborted) return Promise.reject(notSent());
    const weight = this.opts.weight?.(item) ?? 1;
    if (this.pending + weight > this.opts.maxPending && this.pending > 0) {
      return Promise.reject(
        new QueueOverloadedError(`queue is overloaded (${this.pending} publishes waiting)`),
      );
    }
    this.pending += weight;
    return new Promise<Res>((resolve, reject) => {
      const p: Pending<Req, Res> = { item, weight, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        p.onAbort = () => {
          const i = this.queue.indexOf(p);
          if (i < 0) return; // already flushing: the flush settles it
          this.queue.splice(i, 1);
          this.settled(p.weight);
          reject(notSent());
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.queue.push(p);
      this.schedule();
    });
  }

  /** Resolves when nothing is waiting or in flight (used by graceful shutdown). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.running >= this.opts.concurrency) return; // a finishing flush picks the queue up
    if (this.queuedWeight() >= this.opts.maxBatch || this.opts.lingerMs === 0) {
      this.flushNow();
    } else if (!this.timer && this.queue.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flushNow();
      }, this.opts.lingerMs);
    }
  }

  private queuedWeight(): number {
    let w = 0;
    for (const p of this.queue) w += p.weight;
    return w;
  }

  /** Takes the next flush off the queue, in order, within maxBatch and without repeated keys. */
  private take(): Pending<Req, Res>[] {
    const batch: Pending<Req, Res>[] = [];
    const rest: Pending<Req, Res>[] = [];
    const seen = new Set<string>();
    let weight = 0;
    for (const p of this.queue) {
      const keys = this.opts.keys?.(p.item) ?? [];
      const fits = batch.length === 0 || weight + p.weight <= this.opts.maxBatch;
      if (!fits || keys.some((k) => seen.has(k))) {
        rest.push(p);
        continue;
      }
      for (const k of keys) seen.add(k);
      weight += p.weight;
      batch.push(p);
    }
    this.queue = rest;
    return batch;
  }

  private flushNow(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.queue.length === 0 || this.running >= this.opts.concurrency) return;
    const batch = this.take();
    for (const p of batch) if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
    this.running++;
    this.opts
      .flush(batch.map((p) => p.item))
      .then(
        (results) => {
          if (results.length !== batch.length)
            throw new Error(`flush returned ${results.length} results for ${batch.length} items`);
          for (const [i, p] of batch.entries()) p.resolve(results[i]!);
        },
        (err) => {
          for (const p of batch) p.reject(err);
        },
      )
      .catch((err) => {
        for (const p of batch) p.reject(err);
      })
      .finally(() => {
        this.running--;
        this.settled(batch.reduce((w, p) => w + p.weight, 0));
        // Whatever queued up during this flush has already waited at least as long as a linger would.
        this.flushNow();
      });
  }

  private settled(weight: number): void {
    this.pending -= weight;
    if (this.pending === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}

const notSent = () =>
  new QueueUnavailableError('the deadline passed before the queue write started; nothing was queued');
