import { CodedError } from '../contract/error-codes.ts';

/**
 * The queue's own errors. Each carries the code its client is answered with; the HTTP edge answers them
 * by that code's row (http/error-map.ts, http/error-registry.ts). Two families, and the difference is
 * the whole point:
 *
 * - QueueUnavailableError and its subclasses: the message was NOT accepted and will never be stored
 *   from this attempt. Retrying is safe even without an Idempotency-Key.
 * - PublishOutcomeUnknownError: the message may or may not be on the queue (an ack that never came, a
 *   connection lost during COMMIT). Only a retry with the same Idempotency-Key is safe.
 */

/** Not accepted: the queue cannot take messages now (down, not connected, deadline passed unsent). */
export class QueueUnavailableError extends CodedError {
  constructor(
    message: string,
    options?: { cause?: unknown },
    code: 'QUEUE_UNAVAILABLE' | 'QUEUE_FULL' = 'QUEUE_UNAVAILABLE',
  ) {
    super(code, message, {}, options);
    this.name = 'QueueUnavailableError';
  }
}

/** Not accepted: the queue is at its configured size limit (stream max_bytes/max_msgs, table cap). */
export class QueueFullError extends QueueUnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options, 'QUEUE_FULL');
    this.name = 'QueueFullError';
  }
}

/** Not accepted: too many publishes already waiting in this process (bounded memory); QUEUE_UNAVAILABLE. */
export class QueueOverloadedError extends QueueUnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueueOverloadedError';
  }
}

/**
 * The queue may hold the message, or may not: the outcome could not be learned before the deadline.
 * `ids` are the ids the messages were published under, so a client can look them up later.
 */
export class PublishOutcomeUnknownError extends CodedError {
  declare readonly ids: string[];
  constructor(message: string, ids: string[] = [], options?: { cause?: unknown }) {
    super('ACCEPTANCE_UNKNOWN', message, { ids }, options);
    this.name = 'PublishOutcomeUnknownError';
  }
}

/** Not accepted: one message is larger than the queue can carry. Retrying cannot help. */
export class MessageTooLargeError extends CodedError {
  constructor(readonly limitBytes: number) {
    super('MESSAGE_TOO_LARGE', `the message is larger than the queue accepts (${limitBytes} bytes)`);
    this.name = 'MessageTooLargeError';
  }
}

/** Not accepted: this Idempotency-Key was already used for a different request body. */
export class IdempotencyKeyReusedError extends CodedError {
  constructor(readonly originalId: string) {
    super('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was already used with a different request body');
    this.name = 'IdempotencyKeyReusedError';
  }
}

/** Not accepted (yet): the first request with this Idempotency-Key is still being published. */
export class IdempotencyKeyInFlightError extends CodedError {
  constructor() {
    super('IDEMPOTENCY_KEY_IN_FLIGHT', 'a request with this Idempotency-Key is still in progress');
    this.name = 'IdempotencyKeyInFlightError';
  }
}
