import type { NatsConfig } from '../../config.ts';
import type { SubjectScanOptions } from './subject-scan.ts';

/**
 * What the NATS queue takes from the configuration, and nothing else: built from `Config` in one place
 * (queue/open-queue.ts `natsQueueSettings`), so this folder does not read settings it does not use.
 */
export interface NatsQueueSettings {
  /** The servers of NATS_URL (comma-separated there), tried in turn. */
  servers: string[];
  /** Stream, subject, consumer, stream limits, credentials and TLS (the NATS_* settings). */
  nats: NatsConfig;
  /** INTAKE_PUBLISH_TIMEOUT_MS: a publish is answered by then; also JetStream's request timeout. */
  publishTimeoutMs: number;
  /** INTAKE_ENQUEUE_MAX_BATCH: most queued messages in one envelope (stream message). */
  maxBatch: number;
  /** INTAKE_MAX_PENDING_PUBLISHES: publishes waiting in this process beyond which 503 is answered. */
  maxPending: number;
  /**
   * The writer consumer's max_deliver: a safety net above the worker's own attempt limit, so the server
   * only stops a message that keeps crashing workers (each crash is a delivery).
   */
  maxDeliver: number;
  /** INTAKE_BODY_LIMIT_BYTES: warned about at connect when the server's max_payload is smaller. */
  bodyLimitBytes: number;
  /** Bounds of the GDPR count's stream scan (defaults: SUBJECT_SCAN_DEFAULTS). */
  subjectScan?: Partial<Pick<SubjectScanOptions, 'maxMessages' | 'maxMs'>>;
}
