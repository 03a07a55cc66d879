import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from '../../ops/logger.ts';
import { decodeEnvelope } from './envelope.ts';

/**
 * How many messages of one data subject (IP pseudonym) are on the stream and not yet acknowledged by
 * the writer consumer: GDPR export reports them, erasure's tombstone drops them when the worker meets
 * them. JetStream has no index by content, so this reads the stream from the writer's ack floor + 1 to
 * its last sequence with a short-lived ordered consumer, and counts the envelope entries whose
 * `ip.pseudonym` is this one. An envelope is only decoded when its bytes contain the quoted pseudonym.
 *
 * Bounded: at most `maxMessages` stream messages and `maxMs`. Beyond that the count is a lower bound
 * (what the scanned part holds) and a warning is logged; the tombstone still drops every queued
 * message of the subject, counted or not. Messages acknowledged out of order above the ack floor (one
 * worker's later batch committed before another's earlier one) are still counted for that moment.
 */
export interface SubjectScanOptions {
  stream: string;
  subject: string;
  consumer: string;
  /** Stream messages (envelopes) read at most per count. */
  maxMessages: number;
  /** Time a count may take at most. */
  maxMs: number;
}

/** Defaults: ~5 s, and 200,000 envelopes (up to 100 M queued messages of 500 per envelope). */
export const SUBJECT_SCAN_DEFAULTS = { maxMessages: 200_000, maxMs: 5000 } as const;

/** Stream messages asked for per pull request. */
const PULL = 256;

export async function countQueuedForSubject(
  js: JetStreamClient,
  jsm: JetStreamManager,
  opts: SubjectScanOptions,
  pseudonym: string,
  log: Logger,
): Promise<number> {
  const started = Date.now();
  const [ci, si] = await Promise.all([
    jsm.consumers.info(opts.stream, opts.consumer),
    jsm.streams.info(opts.stream),
  ]);
  const last = si.state.last_seq;
  const start = Math.max(ci.ack_floor.stream_seq + 1, si.state.first_seq);
  if (start > last || si.state.messages === 0) return 0;

  const needle = Buffer.from(JSON.stringify(pseudonym));
  const oc = await js.consumers.get(opts.stream, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: start,
    filter_subjects: opts.subject,
  });
  let count = 0;
  let scanned = 0;
  let complete = false;
  try {
    while (!complete && scanned < opts.maxMessages && Date.now() - started < opts.maxMs) {
      const left = opts.maxMs - (Date.now() - started);
      const batch = await oc.fetch({
        max_messages: Math.min(PULL, opts.maxMessages - scanned),
        expires: Math.max(1000, Math.min(left, 5000)),
      });
      let got = 0;
      for await (const m of batch) {
        got++;
        scanned++;
        const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
        if (data.includes(needle)) {
          for (const q of decodeEnvelope(m.data).messages) if (q.ip?.pseudonym === pseudonym) count++;
        }
        if (m.seq >= last) {
          complete = true;
          break;
        }
        if (Date.now() - started >= opts.maxMs) break;
      }
      batch.stop();
      // Nothing came although the last sequence was not reached: the rest was deleted meanwhile.
      if (got === 0) complete = true;
    }
  } finally {
    await oc.delete().catch(() => {});
  }
  if (!complete) {
    log.warn(
      { stream: opts.stream, scanned, fromSeq: start, lastSeq: last, ms: Date.now() - started, count },
      'queued count for a subject is a lower bound: the scan stopped early',
    );
  }
  return count;
}
