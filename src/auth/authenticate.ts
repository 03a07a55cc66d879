import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ApiKey, BOUND_SCOPES, hashKey, type Scope } from './api-keys.ts';
import type { Buckets } from './cluster-buckets.ts';
import { ForbiddenError, RateLimitedError, UnauthenticatedError } from './errors.ts';
import { type BucketOptions, type TakeResult, TokenBuckets } from './rate-limit.ts';

export interface AuthOptions {
  keys: ApiKey[];
  /** Default bucket for keys without their own; undefined = no limit. */
  defaultRateLimit: BucketOptions | undefined;
  /** Where tokens are taken: default this process's own buckets; the pod's in an API cluster. */
  buckets?: Buckets;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route needs; routes without one (health, metrics, docs) are open. */
    scope?: Scope;
    /**
     * `messages`: the route charges the rate limit one token per message it carries: one when the
     * request arrives, like every route, and the rest when the ingest route calls
     * `req.chargeMessages(n)` once the body is parsed. Default: one token per request.
     */
    rateCost?: 'messages';
  }
  interface FastifyRequest {
    apiKey?: ApiKey;
    /** Charges the rate limit for `n` messages (429 if it cannot pay); absent when there is no limit. */
    chargeMessages?: (n: number) => Promise<void>;
  }
}

/**
 * Bearer API keys with scopes, optional sender restrictions and per-key token buckets. With no keys
 * configured, auth is off: config.ts refuses that in production, and runtime.ts logs a warning otherwise.
 */
export function registerAuth(app: FastifyInstance, opts: AuthOptions): void {
  const byHash = new Map(opts.keys.map((k) => [k.hash, k]));
  const buckets = opts.buckets ?? new TokenBuckets();
  const enabled = opts.keys.length > 0;

  app.addHook('onRequest', async (req, reply) => {
    const scope = req.routeOptions.config?.scope;
    if (!scope) return;
    if (enabled) {
      const key = authenticate(req, byHash);
      if (!key.scopes.includes(scope)) {
        throw new ForbiddenError(`the key "${key.name}" does not have the "${scope}" scope`);
      }
      // Config refuses such keys (api-keys.ts); a route of every sender never serves a bound key.
      if (key.senders && !BOUND_SCOPES.includes(scope)) {
        throw new ForbiddenError(`the key "${key.name}" is bound to senders: "${scope}" needs a key without`);
      }
      req.apiKey = key;
      req.client = key.name;
    }
    const limit = req.apiKey?.rateLimit ?? opts.defaultRateLimit;
    if (!limit) return;
    const client = req.client ?? 'anonymous';
    // Every request pays one token before its body is read, so an empty bucket is refused at once (and
    // the refusal reaches the client still uploading); an ingest route pays the rest, one per further
    // message, once it knows how many the body holds.
    const r = await buckets.take(client, limit);
    rateHeaders(reply, r);
    if (!r.allowed) throw rateLimited(limit, r, '');
    if (req.routeOptions.config?.rateCost === 'messages') {
      req.chargeMessages = async (n) => {
        if (n <= 1) return;
        const paid = await buckets.take(client, limit, n - 1);
        rateHeaders(reply, paid);
        if (!paid.allowed) throw rateLimited(limit, paid, ` by this request's ${n} messages`);
      };
    }
  });
}

function rateHeaders(reply: FastifyReply, r: TakeResult): void {
  reply.header('ratelimit-limit', String(r.limit));
  reply.header('ratelimit-remaining', String(r.remaining));
  reply.header('ratelimit-reset', String(r.resetS));
}

function rateLimited(limit: BucketOptions, r: TakeResult, by: string): RateLimitedError {
  return new RateLimitedError(
    `rate limit of ${limit.perSecond} messages/s (burst ${limit.burst}) exceeded${by}`,
    r.retryAfterS,
  );
}

function authenticate(req: FastifyRequest, byHash: Map<string, ApiKey>): ApiKey {
  const header = req.headers.authorization;
  const m = header === undefined ? null : /^Bearer +([\x21-\x7e]{1,512})$/i.exec(header);
  if (!m) {
    throw new UnauthenticatedError(
      'send an API key as "Authorization: Bearer <key>"',
      'Bearer realm="intake"',
    );
  }
  const h = hashKey(m[1]!);
  const key = byHash.get(h);
  // The map lookup is on a hash of the key, so its timing reveals nothing about the key itself; the
  // comparison below is the belt to those braces.
  if (!key || !timingSafeEqual(Buffer.from(key.hash), Buffer.from(h))) {
    throw new UnauthenticatedError(
      'the API key is not valid',
      'Bearer realm="intake", error="invalid_token"',
    );
  }
  return key;
}

/** Whether the request's key may ingest as and read `sender` (keys without a sender list: anyone). */
export function senderAllowed(req: FastifyRequest, sender: string): boolean {
  const allowed = req.apiKey?.senders;
  return !allowed || allowed.includes(sender);
}

/**
 * The senders whose messages the request may read: undefined for every sender (a key without
 * senders, or auth off), else the key's list, narrowed to `asked` when given; 403 when `asked` is
 * another sender (asking by name is a mistake worth telling, unlike an id, which is 404: routes
 * check a found message with senderAllowed).
 */
export function readableSenders(req: FastifyRequest, asked: string | undefined): string[] | undefined {
  if (asked !== undefined) {
    if (!senderAllowed(req, asked))
      throw new ForbiddenError(`the key "${req.apiKey!.name}" may not read sender "${asked}"`);
    return [asked];
  }
  return req.apiKey?.senders;
}

/** 403 unless the request's key may ingest as `sender`. */
export function assertSenderAllowed(req: FastifyRequest, sender: string): void {
  if (!senderAllowed(req, sender)) {
    throw new ForbiddenError(`the key "${req.apiKey!.name}" may not send as "${sender}"`);
  }
}
