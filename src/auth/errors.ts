import { CodedError } from '../contract/error-codes.ts';

/**
 * Why a request was refused by authentication or rate limiting. Each carries its code; the HTTP edge
 * answers it by that code's row (http/error-map.ts); this module knows nothing of HTTP.
 */

/** No API key, or one intake does not know (401). `challenge` is how to authenticate (WWW-Authenticate). */
export class UnauthenticatedError extends CodedError {
  declare readonly challenge: string;
  constructor(message: string, challenge: string) {
    super('UNAUTHENTICATED', message, { challenge });
    this.name = 'UnauthenticatedError';
  }
}

/** The key may not do this: a missing scope, or a sender it may not use (403). */
export class ForbiddenError extends CodedError {
  constructor(message: string) {
    super('FORBIDDEN', message);
    this.name = 'ForbiddenError';
  }
}

/** The key's token bucket cannot pay for this request (429); `retryAfterS` is when it can. */
export class RateLimitedError extends CodedError {
  declare readonly retryAfterS: number;
  constructor(message: string, retryAfterS: number) {
    super('RATE_LIMITED', message, { retryAfterS });
    this.name = 'RateLimitedError';
  }
}
