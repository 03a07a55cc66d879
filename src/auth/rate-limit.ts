/**
 * Token buckets per client (docs/contract.md §2: rate limits per key). Written here because @fastify/rate-limit
 * counts fixed windows, which allows 2× the limit across a window edge, has no burst setting and charges
 * per request; a token bucket charged per message is a few lines. Memory is bounded: one bucket per
 * configured key (plus one shared anonymous bucket), never per remote address.
 *
 * A request may cost more than one token (a batch costs one per message). A cost above the burst could
 * never be paid, so a full bucket admits it and goes into debt: the key then waits until the debt is
 * repaid. Large batches stay possible and the average rate still holds.
 */
export interface BucketOptions {
  perSecond: number;
  burst: number;
}

export interface TakeResult {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the request could be paid (Retry-After) or until the bucket is full (RateLimit-Reset). */
  retryAfterS: number;
  resetS: number;
}

export class TokenBuckets {
  private buckets = new Map<string, { tokens: number; at: number; opts: BucketOptions }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Takes `cost` tokens if the bucket can pay them (with debt for a cost above the burst). */
  take(client: string, opts: BucketOptions, cost = 1): TakeResult {
    const b = this.refill(client, opts);
    const needed = Math.min(cost, opts.burst);
    const allowed = b.tokens >= needed;
    if (allowed) b.tokens -= cost;
    return this.result(b.tokens, opts, allowed, needed);
  }

  private refill(client: string, opts: BucketOptions) {
    const t = this.now();
    let b = this.buckets.get(client);
    if (!b || b.opts.perSecond !== opts.perSecond || b.opts.burst !== opts.burst) {
      b = { tokens: opts.burst, at: t, opts };
      this.buckets.set(client, b);
    }
    b.tokens = Math.min(opts.burst, b.tokens + ((t - b.at) / 1000) * opts.perSecond);
    b.at = t;
    return b;
  }

  private result(tokens: number, opts: BucketOptions, allowed: boolean, needed: number): TakeResult {
    const missing = Math.max(0, needed - tokens);
    return {
      allowed,
      limit: opts.burst,
      remaining: Math.max(0, Math.floor(tokens)),
      retryAfterS: allowed ? 0 : Math.max(1, Math.ceil(missing / opts.perSecond)),
      resetS: Math.ceil((opts.burst - tokens) / opts.perSecond),
    };
  }
}
