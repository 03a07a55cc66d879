/**
 * The queue's own errors. Each says what the caller may tell its client; the HTTP edge maps them to
 * problem responses in one place (http/app.ts). Two families, and the difference is the whole point:
 *
 * - QueueUnavailableError and its subclasses: the message was NOT accepted and will never be stored
 *   from this attempt. Retrying is safe even without an Idempotency-Key.
 * - PublishOutcomeUnknownError: the message may or may not be on the queue (an ack that never came, a
 *   connection lost during COMMIT). Only a retry with the same Idempotency-Key is safe.
 */

/** Not accepted: the queue cannot take messages now (down, not connected, deadline passed unsent). */
export class QueueUnavailableError extends Error {
  readonly code: string = 'QUEUE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueueUnavailableError';
  }
}

/** Not accepted: the queue is at its configured size limit (stream max_bytes/max_msgs, table cap). */
export class QueueFullError extends QueueUnavailableError {
  override readonly code: string = 'QUEUE_FULL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueueFullError';
  }
}

/** Not accepted: too many publishes already waiting in this process (bounded memory). */
export class QueueOverloadedError extends QueueUnavailableError {
  override readonly code: string = 'QUEUE_OVERLOADED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueueOverloadedError';
  }
}

/**
 * The queue may hold the message, or may not: the outcome could not be learned before the deadline.
 * `ids` are the ids the messages were published under, so a client can look them up later.
 */
export class PublishOutcomeUnknownError extends Error {
  readonly code = 'ACCEPTANCE_UNKNOWN';
  constructor(
    message: string,
    readonly ids: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PublishOutcomeUnknownError';
  }
}

/** Not accepted: one message is larger than the queue can carry. Retrying cannot help. */
export class MessageTooLargeError extends Error {
  readonly code = 'MESSAGE_TOO_LARGE';
  constructor(readonly limitBytes: number) {
    super(`the message is larger than the queue accepts (${limitBytes} bytes)`);
    this.name = 'MessageTooLargeError';
  }
}

/** Not accepted: this Idempotency-Key was already used for a different request body. */
export class IdempotencyKeyReusedError extends Error {
  readonly code = 'IDEMPOTENCY_KEY_REUSED';
  constructor(readonly originalId: string) {
    super('this Idempotency-Key was already used with a different request body');
    this.name = 'IdempotencyKeyReusedError';
  }
}

/** Not accepted (yet): the first request with this Idempotency-Key is still being published. */
export class IdempotencyKeyInFlightError extends Error {
  readonly code = 'IDEMPOTENCY_KEY_IN_FLIGHT';
  constructor() {
    super('a request with this Idempotency-Key is still in progress');
    this.name = 'IdempotencyKeyInFlightError';
  }
}
