/**
 * Why a request was refused by authentication or rate limiting. The HTTP edge answers them with their
 * problem codes (http/error-map.ts); this module knows nothing of HTTP.
 */

/** No API key, or one intake does not know (401). `challenge` is the WWW-Authenticate value. */
export class UnauthenticatedError extends Error {
  readonly code = 'UNAUTHENTICATED';
  constructor(
    message: string,
    readonly challenge: string,
  ) {
    super(message);
    this.name = 'UnauthenticatedError';
  }
}

/** The key may not do this: a missing scope, or a sender it may not use (403). */
export class ForbiddenError extends Error {
  readonly code = 'FORBIDDEN';
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenError';
  }
}

/** The key's token bucket cannot pay for this request (429). */
export class RateLimitedError extends Error {
  readonly code = 'RATE_LIMITED';
  constructor(
    message: string,
    readonly retryAfterS: number,
  ) {
    super(message);
    this.name = 'RateLimitedError';
  }
}
