import { setTimeout as sleep } from 'node:timers/promises';
import type { OpenedQueue, QueueProcess } from '../queue.ts';
import { NatsConsumer } from './consumer.ts';
import { inspectStream, unreachable } from './inspect.ts';
import { NatsLink, STARTUP_WAIT_MS } from './link.ts';
import { NatsPublisher } from './publisher.ts';
import type { NatsQueueSettings } from './settings.ts';
import { SUBJECT_SCAN_DEFAULTS } from './subject-scan.ts';

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
export async function openNatsQueue(settings: NatsQueueSettings, proc: QueueProcess): Promise<OpenedQueue> {
  const { log } = proc;
  const roles = proc.roles ?? ['api', 'worker'];
  const { nats } = settings;
  // Every process exports stream usage and depth; workers also trim what they acknowledged.
  const link = new NatsLink(settings, log.child({ component: 'nats' }), {
    publishes: roles.includes('api'),
    trims: roles.includes('worker'),
    metrics: proc.metrics,
  });
  link.start();
  const waited = await Promise.race([
    link.firstReady.then(() => 'ready' as const),
    sleep(STARTUP_WAIT_MS, 'timeout' as const, { ref: false }),
  ]).catch(async (err: unknown) => {
    await link.close();
    throw err;
  });
  if (waited === 'timeout')
    log.warn({ servers: settings.servers.join(',') }, 'NATS not ready yet; starting unready');
  const producer = new NatsPublisher(
    link,
    {
      subject: nats.subject,
      lingerMs: nats.publishLingerMs,
      maxBatch: settings.maxBatch,
      maxPending: settings.maxPending,
      concurrency: nats.publishConcurrency,
      timeoutMs: settings.publishTimeoutMs,
      subjectScan: {
        stream: nats.stream,
        consumer: nats.consumer,
        ...SUBJECT_SCAN_DEFAULTS,
        ...settings.subjectScan,
      },
    },
    link.log,
  );
  const consumer = roles.includes('worker')
    ? new NatsConsumer(link, { stream: nats.stream, consumer: nats.consumer, ackWaitMs: nats.ackWaitMs })
    : undefined;
  let closed: Promise<void> | undefined;
  return {
    producer,
    consumer,
    inspect: async () => {
      const { jsm, nc } = link;
      if (!jsm || !nc || !link.isConnected()) return unreachable(settings, 'not connected');
      return inspectStream(jsm, settings, nc.getServer());
    },
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
