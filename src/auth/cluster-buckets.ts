import { type BucketOptions, type TakeResult, TokenBuckets } from './rate-limit.ts';

/**
 * One set of token buckets per pod, not per process: with INTAKE_API_WORKERS=N (node:cluster), the
 * primary holds the buckets and each API process asks it over the IPC channel, so a key's rate is its
 * rate on the pod, whichever process its connections land on (the kernel spreads them unevenly, and a
 * keep-alive client stays on one). Giving each process 1/N of the rate would have cost no IPC, but a
 * client on one connection would get 1/N of its rate.
 *
 * The takes of one event-loop turn go to the primary as one message and come back as one, so a busy
 * process sends a message per turn, not per request. If the primary does not answer within
 * ANSWER_TIMEOUT_MS (or the channel is gone), this process decides alone with 1/N of the rate, so a
 * limit is never lifted.
 */
export const RATE_REQUEST = 'intake:rate';
export const RATE_ANSWER = 'intake:rate-answer';
const ANSWER_TIMEOUT_MS = 1000;

/** The takes an API process asks the primary for, and the primary's answers, by id. */
export interface RateRequest {
  type: typeof RATE_REQUEST;
  takes: Array<{ id: number; client: string; perSecond: number; burst: number; cost: number }>;
}
export interface RateAnswer {
  type: typeof RATE_ANSWER;
  results: Array<{ id: number; result: TakeResult }>;
}

/** Where an API process takes tokens: its own buckets, or the pod's (ClusterBuckets). */
export interface Buckets {
  take(client: string, opts: BucketOptions, cost?: number): TakeResult | Promise<TakeResult>;
}

/** The API process's side: asks the primary through `channel` (process in a cluster worker). */
export class ClusterBuckets implements Buckets {
  private readonly pending = new Map<number, { resolve: (r: TakeResult) => void; local: () => TakeResult }>();
  private batch: RateRequest['takes'] = [];
  private seq = 0;
  private readonly fallback = new TokenBuckets();

  constructor(
    private readonly channel: NodeJS.Process,
    private readonly processes: number,
  ) {
    channel.on('message', (m: RateAnswer) => {
      if (m?.type !== RATE_ANSWER) return;
      for (const { id, result } of m.results) {
        this.pending.get(id)?.resolve(result);
        this.pending.delete(id);
      }
    });
  }

  take(client: string, opts: BucketOptions, cost = 1): Promise<TakeResult> {
    const share = {
      perSecond: opts.perSecond / this.processes,
      burst: Math.max(1, opts.burst / this.processes),
    };
    const local = () => this.fallback.take(client, share, cost);
    if (!this.channel.connected || !this.channel.send) return Promise.resolve(local());
    return new Promise((resolve) => {
      const id = ++this.seq;
      this.pending.set(id, { resolve, local });
      this.batch.push({ id, client, perSecond: opts.perSecond, burst: opts.burst, cost });
      if (this.batch.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const takes = this.batch;
    this.batch = [];
    const ids = takes.map((t) => t.id);
    const decideLocally = () => {
      for (const id of ids) {
        const p = this.pending.get(id);
        if (!p) continue;
        this.pending.delete(id);
        p.resolve(p.local());
      }
    };
    try {
      this.channel.send!({ type: RATE_REQUEST, takes } satisfies RateRequest);
    } catch {
      decideLocally();
      return;
    }
    setTimeout(decideLocally, ANSWER_TIMEOUT_MS).unref();
  }
}

/** The primary's side: answers one API process's request from the pod's buckets. */
export function answerRateRequest(buckets: TokenBuckets, request: RateRequest): RateAnswer {
  return {
    type: RATE_ANSWER,
    results: request.takes.map((t) => ({
      id: t.id,
      result: buckets.take(t.client, { perSecond: t.perSecond, burst: t.burst }, t.cost),
    })),
  };
}
