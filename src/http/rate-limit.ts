/**
 * Token buckets per client (SPEC §2: rate limits per key). Written here because @fastify/rate-limit
 * counts fixed windows, which allows 2× the limit across a window edge and has no burst setting; a token
 * bucket is a few lines. Memory is bounded: one bucket per configured key (plus one shared anonymous
 * bucket), never per remote address.
 */
export interface BucketOptions {
  perSecond: number;
  burst: number;
}

export interface TakeResult {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until a token is available (Retry-After) or until the bucket is full (RateLimit-Reset). */
  retryAfterS: number;
  resetS: number;
}

export class TokenBuckets {
  private buckets = new Map<string, { tokens: number; at: number; opts: BucketOptions }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  take(client: string, opts: BucketOptions, cost = 1): TakeResult {
    const t = this.now();
    let b = this.buckets.get(client);
    if (!b || b.opts.perSecond !== opts.perSecond || b.opts.burst !== opts.burst) {
      b = { tokens: opts.burst, at: t, opts };
      this.buckets.set(client, b);
    }
    b.tokens = Math.min(opts.burst, b.tokens + ((t - b.at) / 1000) * opts.perSecond);
    b.at = t;
    const allowed = b.tokens >= cost;
    if (allowed) b.tokens -= cost;
    const missing = Math.max(0, cost - b.tokens);
    return {
      allowed,
      limit: opts.burst,
      remaining: Math.floor(b.tokens),
      retryAfterS: allowed ? 0 : Math.max(1, Math.ceil(missing / opts.perSecond)),
      resetS: Math.ceil((opts.burst - b.tokens) / opts.perSecond),
    };
  }
}
