import type { ConsumerInfo, JetStreamManager, StreamInfo } from '@nats-io/jetstream';
import type { NatsConfig } from '../../config.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import { applyDeferredLimits, idempotencyBucket } from './provision.ts';

/**
 * Watches the message stream from every process, API and worker alike, so the backlog and the room
 * left are visible with all workers down: every few seconds it reads the stream and the writer
 * consumer, exports their usage and depth, and tells the link whether the stream has room.
 *
 * In workers it also trims. The stream has limits retention (acknowledged messages stay until max_age,
 * for replay after a database restore) and `discard: new` (a full stream refuses publishes). Without
 * trimming, messages already stored would fill the stream and turn the API away. So when the stream is
 * NATS_TRIM_AT_PERCENT full, a worker deletes the oldest messages down to half that, never above the
 * writer consumer's ack floor: what cannot be trimmed is unprocessed, and "full" means a real backlog.
 * The replay window shrinks under that pressure (docs/production.md). Other consumers of the stream lose what they had not read below the
 * floor. Concurrent trims by several workers are harmless (a purge up to a sequence is idempotent).
 *
 * With metrics it also reads the Idempotency-Key bucket's stream (`KV_<stream>-idempotency`) and exports
 * its bytes and limit: the bucket has `discard: new` too, so at NATS_IDEMPOTENCY_MAX_BYTES a request with
 * a new key is refused (docs/production.md#sizing-the-idempotency-bucket), and nothing else shows it fill.
 */
export interface StreamMonitorOptions {
  nats: NatsConfig;
  /** Trim acknowledged messages (worker processes). */
  trim: boolean;
  metrics: Metrics | undefined;
  log: Logger;
  /** Told after each reading whether the stream has room for another message. */
  onRoom: (hasRoom: boolean) => void;
}

/** Usage of the stream's own limits, 0 to 1 (the larger of bytes and messages); 0 without limits. */
export function streamUsage(info: StreamInfo): number {
  const { max_bytes, max_msgs } = info.config;
  const bytes = max_bytes > 0 ? info.state.bytes / max_bytes : 0;
  const msgs = max_msgs > 0 ? info.state.messages / max_msgs : 0;
  return Math.max(bytes, msgs);
}

/** Room for one more small message under the stream's own limits (the store is probed elsewhere). */
export function streamHasRoom(info: StreamInfo): boolean {
  const { max_bytes, max_msgs } = info.config;
  if (max_msgs > 0 && info.state.messages >= max_msgs) return false;
  // A stream message carries ~100 bytes of headers and framing beyond the smallest envelope.
  return !(max_bytes > 0 && info.state.bytes + 1024 > max_bytes);
}

export class NatsStreamMonitor {
  constructor(private readonly opts: StreamMonitorOptions) {}

  /** One reading (and, in a worker, one trim); failures are logged and counted, never thrown. */
  async tick(jsm: JetStreamManager): Promise<void> {
    await Promise.all([this.tickStream(jsm), this.readBucket(jsm)]);
  }

  private async tickStream(jsm: JetStreamManager): Promise<void> {
    const { nats } = this.opts;
    let si: StreamInfo;
    let ci: ConsumerInfo;
    try {
      [si, ci] = await Promise.all([
        jsm.streams.info(nats.stream),
        jsm.consumers.info(nats.stream, nats.consumer),
      ]);
    } catch (err) {
      this.failed('nats-stream-stats', err);
      return;
    }
    this.export(si, ci);
    this.opts.onRoom(streamHasRoom(si));
    if (!this.opts.trim) return;
    try {
      const trimmed = await this.trim(jsm, si, ci);
      const latest = trimmed ? await jsm.streams.info(nats.stream) : si;
      if (trimmed) {
        this.export(latest, ci);
        this.opts.onRoom(streamHasRoom(latest));
      }
      await applyDeferredLimits(jsm, nats, latest, this.opts.log);
    } catch (err) {
      this.failed('nats-stream-trim', err);
    }
  }

  /** Exports the Idempotency-Key bucket's usage; a separate request, so either failing spares the other. */
  private async readBucket(jsm: JetStreamManager): Promise<void> {
    const m = this.opts.metrics;
    if (!m) return; // nothing would show it: spare the server the request
    const bucket = idempotencyBucket(this.opts.nats.stream);
    let si: StreamInfo;
    try {
      si = await jsm.streams.info(`KV_${bucket}`);
    } catch (err) {
      this.failed('nats-idempotency-stats', err);
      return;
    }
    m.idempotencyBucketBytes.set({ bucket }, si.state.bytes);
    m.idempotencyBucketLimitBytes.set({ bucket }, Math.max(0, si.config.max_bytes));
  }

  private export(si: StreamInfo, ci: ConsumerInfo): void {
    const m = this.opts.metrics;
    if (!m) return;
    const labels = { stream: this.opts.nats.stream };
    m.streamBytes.set(labels, si.state.bytes);
    m.streamMessages.set(labels, si.state.messages);
    m.streamLimitBytes.set(labels, Math.max(0, si.config.max_bytes));
    m.streamLimitMessages.set(labels, Math.max(0, si.config.max_msgs));
    // Envelopes waiting or delivered and not yet acknowledged, as the worker's depth() counts them.
    m.queueDepth.set(ci.num_pending + ci.num_ack_pending);
  }

  /**
   * Once the stream is NATS_TRIM_AT_PERCENT full, deletes its oldest messages down to half that, but
   * never one the writer consumer has not acknowledged; true if it deleted any. Keeping the newer half
   * of the acknowledged history keeps some replay window right after a trim.
   */
  private async trim(jsm: JetStreamManager, si: StreamInfo, ci: ConsumerInfo): Promise<boolean> {
    const usage = streamUsage(si);
    const trimAt = this.opts.nats.trimAtPercent / 100;
    if (usage === 0 || usage < trimAt) return false;
    const { first_seq, messages, bytes } = si.state;
    const floor = ci.ack_floor.stream_seq;
    if (floor < first_seq || messages === 0) return false; // nothing acknowledged is left to trim
    // How many of the oldest messages to drop to get down to trimAt / 2 (bytes at their average size).
    const { max_bytes, max_msgs } = si.config;
    const overMsgs = max_msgs > 0 ? messages - (max_msgs * trimAt) / 2 : 0;
    const overBytes = max_bytes > 0 ? (bytes - (max_bytes * trimAt) / 2) / (bytes / messages) : 0;
    const drop = Math.ceil(Math.max(overMsgs, overBytes, 1));
    // Purge by sequence removes every message below `seq`.
    const below = Math.min(floor + 1, first_seq + drop);
    const r = await jsm.streams.purge(this.opts.nats.stream, { seq: below });
    this.opts.metrics?.streamTrimmed.inc({ stream: this.opts.nats.stream }, r.purged);
    this.opts.log.info(
      {
        stream: this.opts.nats.stream,
        purged: r.purged,
        belowSeq: below,
        ackFloor: floor,
        usagePercent: Math.round(usage * 100),
      },
      'trimmed acknowledged messages from the stream',
    );
    return r.purged > 0;
  }

  private failed(task: string, err: unknown): void {
    this.opts.metrics?.maintenanceFailures.inc({ task });
    this.opts.log.warn({ err, task }, 'NATS stream maintenance failed');
  }
}
