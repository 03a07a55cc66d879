import { JetStreamApiError } from '@nats-io/jetstream';
import { errors } from '@nats-io/transport-node';
import { QueueFullError, QueueUnavailableError } from '../errors.ts';

/**
 * What a failed JetStream request means for the messages in it, read from the client's typed errors
 * (never from message text):
 *
 * - The server answered with an API error (JetStreamApiError): the stream did not store the message.
 *   That is definite, so the caller may say "not accepted".
 * - No responders: nothing was subscribed to the subject (no stream leader at that moment, say during
 *   an election), so nothing stored it either.
 * - Anything else after the request was sent (a timeout, the connection lost) leaves the outcome open.
 */

/** Server error codes that mean "no room": the stream or the server's store is at its limit. */
export const NO_ROOM_CODES = {
  /** JSStreamStoreFailedF: the stream refused to store (with discard new: max_msgs/max_bytes reached). */
  streamStoreFailed: 10077,
  /** JSInsufficientResourcesErr: the server's (or account's) JetStream store is full. */
  insufficientResources: 10023,
  /** JSStorageResourcesExceededErr: the server cannot reserve the storage a stream asks for. */
  storageResourcesExceeded: 10047,
} as const;

const NO_ROOM = new Set<number>(Object.values(NO_ROOM_CODES));

/** The server answered: the request was refused, nothing was stored. */
export function isRefusal(err: unknown): err is JetStreamApiError {
  return err instanceof JetStreamApiError;
}

/** Nobody was listening on the subject: the request was not taken by any stream. */
export function isNoResponders(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e instanceof errors.NoRespondersError) return true;
    if (e instanceof errors.RequestError && e.isNoResponders()) return true;
  }
  return false;
}

/** The server's store (not just the stream) has no room: 10023 or 10047. */
export function isStoreFull(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === NO_ROOM_CODES.insufficientResources || err.code === NO_ROOM_CODES.storageResourcesExceeded)
  );
}

/**
 * The queue error for a request that certainly stored nothing: QueueFullError when the server said it
 * has no room, else QueueUnavailableError; `what` says what was attempted.
 */
export function notAccepted(err: unknown, what: string): QueueUnavailableError {
  if (err instanceof QueueUnavailableError) return err;
  if (err instanceof JetStreamApiError && NO_ROOM.has(err.code)) {
    const reason = err.apiError().description;
    return new QueueFullError(`${what}: the queue is full (${reason})`, { cause: err });
  }
  return new QueueUnavailableError(what, { cause: err });
}
