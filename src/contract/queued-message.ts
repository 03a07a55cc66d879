/**
 * A message as it travels on the queue (format version 1): validated, its IP already protected, its id
 * assigned. The contract between the edge and the worker, so it lives below both; also the documented
 * on-stream format for other consumers (docs/queue-format.md).
 */
export interface QueuedMessage {
  v: 1;
  /** UUIDv7; its timestamp is `received_at`. */
  id: string;
  /** RFC 3339, millisecond precision, UTC. */
  received_at: string;
  /** Whole seconds since the epoch. */
  ts: number;
  sender: string;
  message: Record<string, unknown>;
  priority: number | null;
  /** Present when the client sent `sent-from-ip`: never the plaintext. Base64 fields. */
  ip?: ProtectedValue;
  /**
   * Set by a dead-letter replay (ingest/replay.ts), never by the API: how many times the message has
   * been replayed (1 the first time). The worker counts a replayed message in
   * intake_dead_letters_replayed_total once it is done with it (loss accounting, docs/alerting.md); the
   * NATS queue makes each replay's Nats-Msg-Id distinct with it, so a second replay within the
   * duplicate window is not dropped as a duplicate of the first.
   */
  replayed?: number;
  /**
   * W3C `traceparent` of the publish span that put the message on the queue (version 00, validated): the
   * worker stores its trace id with the row and links its batch span to it (docs/tracing.md). Absent in
   * messages from before it existed and from producers that do not trace.
   */
  traceparent?: string;
  /** W3C `tracestate` that came with the request's `traceparent`, validated; only with `traceparent`. */
  tracestate?: string;
}

export interface ProtectedValue {
  /** HMAC-SHA-256 pseudonym, base64. */
  pseudonym: string;
  /** AES-256-GCM iv || tag || ciphertext, base64. */
  ciphertext: string;
  /** Data key the ciphertext is under. */
  key_id: string;
}
