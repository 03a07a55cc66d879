import { QueueOverloadedError } from './errors.ts';

/**
 * Groups concurrent submissions into one flush: a flush starts when `maxBatch` items wait or `lingerMs`
 * after the first arrived, and at most `concurrency` flushes run at once. Each caller's promise settles
 * with its own item's result once the flush it was part of has finished. This turns one commit (or one
 * replicated ack) per HTTP request into one per batch, the way Kafka producers batch with linger.ms.
 * No library offers this shape (a bounded, per-item-result micro-batcher with backpressure), hence here.
 */
export interface GroupCommitOptions<Req, Res> {
  lingerMs: number;
  maxBatch: number;
  /** Submissions waiting or in flight beyond this are refused at once (bounded memory, fast 503). */
  maxPending: number;
  concurrency: number;
  flush: (items: Req[]) => Promise<Res[]>;
}

interface Pending<Req, Res> {
  item: Req;
  resolve: (r: Res) => void;
  reject: (e: unknown) => void;
}

export class GroupCommit<Req, Res> {
  private queue: Pending<Req, Res>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  private pending = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly opts: GroupCommitOptions<Req, Res>) {}

  /** Items accepted and not yet settled. */
  get size(): number {
    return this.pending;
  }

  submit(item: Req): Promise<Res> {
    if (this.pending >= this.opts.maxPending) {
      return Promise.reject(
        new QueueOverloadedError(`queue is overloaded (${this.pending} publishes waiting)`),
      );
    }
    this.pending++;
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
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
    if (this.queue.length >= this.opts.maxBatch || this.opts.lingerMs === 0) {
      this.flushNow();
    } else if (!this.timer && this.queue.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flushNow();
      }, this.opts.lingerMs);
    }
  }

  private flushNow(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.queue.length === 0 || this.running >= this.opts.concurrency) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
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
        this.pending -= batch.length;
        if (this.pending === 0) for (const w of this.idleWaiters.splice(0)) w();
        // Whatever queued up during this flush has already waited at least as long as a linger would.
        this.flushNow();
      });
  }
}
