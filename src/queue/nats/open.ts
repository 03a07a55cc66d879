import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../config.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { OpenedQueue } from '../queue.ts';
import { NatsConsumer } from './consumer.ts';
import { NatsLink, STARTUP_WAIT_MS } from './link.ts';
import { NatsPublisher } from './publisher.ts';
import { SUBJECT_SCAN_DEFAULTS, type SubjectScanOptions } from './subject-scan.ts';

/** What a process does with the queue, beyond the configuration. */
export interface NatsQueueOptions {
  /** Where stream usage, depth and the probe result go (absent: not exported). */
  metrics?: Metrics;
  /**
   * The process's roles (default both). With `api`, readiness means "a publish can succeed now"; a
   * worker-only process stays ready while the stream is full, so its rollouts are not blocked then.
   * With `worker`, the process trims acknowledged messages (stream-monitor.ts).
   */
  roles?: Array<'api' | 'worker'>;
  /** Bounds of the GDPR count's stream scan (defaults: SUBJECT_SCAN_DEFAULTS). */
  subjectScan?: Partial<Pick<SubjectScanOptions, 'maxMessages' | 'maxMs'>>;
}

/**
 * The production queue (docs/contract.md §3): NATS JetStream behind the same interface as the Postgres queue.
 * NatsLink owns the one connection a process uses and knows whether the queue is usable; the publisher
 * (API side) and the consumer (worker side) are built on it.
 *
 * Start-up never waits for NATS indefinitely: if it is unreachable the process still starts, reports
 * not ready (`/readyz` 503, ingest 503) and connects in the background, so an outage of NATS does not
 * crash-loop every replica. A stream or consumer with settings intake must not change (storage or
 * retention type, ack policy) fails start-up when NATS is reachable then, and keeps the process
 * unready (with an error log every few seconds) when it only shows up later.
 */
export async function openNatsQueue(
  config: Config,
  log: Logger,
  opts: NatsQueueOptions = {},
): Promise<OpenedQueue> {
  const roles = opts.roles ?? ['api', 'worker'];
  const link = new NatsLink(config, log.child({ component: 'nats' }), {
    publishes: roles.includes('api'),
    trims: roles.includes('worker'),
    metrics: opts.metrics,
  });
  link.start();
  const waited = await Promise.race([
    link.firstReady.then(() => 'ready' as const),
    sleep(STARTUP_WAIT_MS, 'timeout' as const, { ref: false }),
  ]).catch(async (err: unknown) => {
    await link.close();
    throw err;
  });
  if (waited === 'timeout') log.warn({ servers: config.natsUrl }, 'NATS not ready yet; starting unready');
  const producer = new NatsPublisher(
    link,
    {
      subject: config.nats.subject,
      lingerMs: config.nats.publishLingerMs,
      maxBatch: config.enqueueMaxBatch,
      maxPending: config.maxPendingPublishes,
      concurrency: config.nats.publishConcurrency,
      timeoutMs: config.publishTimeoutMs,
      subjectScan: {
        stream: config.nats.stream,
        consumer: config.nats.consumer,
        ...SUBJECT_SCAN_DEFAULTS,
        ...opts.subjectScan,
      },
    },
    link.log,
  );
  const consumer = roles.includes('worker')
    ? new NatsConsumer(link, {
        stream: config.nats.stream,
        consumer: config.nats.consumer,
        ackWaitMs: config.nats.ackWaitMs,
      })
    : undefined;
  let closed: Promise<void> | undefined;
  return {
    producer,
    consumer,
    close: () => {
      closed ??= (async () => {
        await producer.close();
        await consumer?.close();
        await link.close();
      })();
      return closed;
    },
  };
}
