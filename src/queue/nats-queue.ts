import { setTimeout as sleep } from 'node:timers/promises';
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Config } from '../config.ts';
import type { Logger } from '../ops/logger.ts';
import { natsAuthOptions } from './nats-auth.ts';
import { NatsConsumer } from './nats-consumer.ts';
import { idempotencyBucket, NatsProvisionError, provisionQueue } from './nats-provision.ts';
import { NatsPublisher } from './nats-publisher.ts';
import type { QueueConsumer, QueueProducer } from './queue.ts';

/**
 * The production queue (SPEC §3): NATS JetStream behind the same interface as the Postgres queue.
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
): Promise<{ producer: QueueProducer; consumer: QueueConsumer }> {
  const link = new NatsLink(config, log.child({ component: 'nats' }));
  link.start();
  const waited = await Promise.race([
    link.firstReady.then(() => 'ready' as const),
    sleep(STARTUP_WAIT_MS, 'timeout' as const, { ref: false }),
  ]).catch(async (err: unknown) => {
    await link.close();
    throw err;
  });
  if (waited === 'timeout') log.warn({ servers: config.natsUrl }, 'NATS not ready yet; starting unready');
  const producer = new NatsPublisher(link, {
    subject: config.nats.subject,
    lingerMs: config.nats.publishLingerMs,
    maxBatch: config.enqueueMaxBatch,
    maxPending: config.maxPendingPublishes,
    concurrency: config.nats.publishConcurrency,
    timeoutMs: config.publishTimeoutMs,
  });
  const consumer = new NatsConsumer(link, {
    stream: config.nats.stream,
    consumer: config.nats.consumer,
    ackWaitMs: config.nats.ackWaitMs,
  });
  return { producer, consumer };
}

/** How long start-up waits for NATS before it goes on unready. */
const STARTUP_WAIT_MS = 3000;

/** The connection and the state of the queue behind it, shared by publisher and consumer. */
export class NatsLink {
  nc: NatsConnection | undefined;
  js: JetStreamClient | undefined;
  jsm: JetStreamManager | undefined;
  /** Idempotency-Key → id (a KV bucket whose max age is the idempotency window). */
  kv: KV | undefined;
  /** Largest stream message the server accepts (its max_payload), minus room for headers. */
  maxEnvelopeBytes = 1024 * 1024 - 4096;
  /** Resolves the first time the queue is usable; rejects if provisioning meets a conflict. */
  readonly firstReady: Promise<void>;

  private connected = false;
  private provisioned = false;
  private publishFailing = false;
  private closing = false;
  private users = 2; // publisher and consumer each release once
  private readonly abort = new AbortController();
  private resolveFirst!: () => void;
  private rejectFirst!: (err: unknown) => void;
  private reprovisioning: Promise<void> | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private closed: Promise<void> | undefined;
  private readonly disconnectWaiters = new Set<(err: Error) => void>();

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.firstReady = new Promise((resolve, reject) => {
      this.resolveFirst = resolve;
      this.rejectFirst = reject;
    });
    this.firstReady.catch(() => {}); // observed by openNatsQueue; later failures are logged instead
  }

  /** Connected, stream and consumer provisioned, and the last publish (if any) did not fail. */
  isReady(): boolean {
    return this.connected && this.provisioned && !this.publishFailing && !this.closing;
  }

  /** Connected and provisioned (publishing may still be failing): the worker can pull. */
  isUsable(): boolean {
    return this.connected && this.provisioned && !this.closing;
  }

  /** A publish failed: not ready until a health check against the stream succeeds. */
  markPublishFailed(err: unknown): void {
    if (!this.publishFailing) this.log.warn({ err }, 'NATS publish failed; readiness off until NATS answers');
    this.publishFailing = true;
  }

  markPublishOk(): void {
    this.publishFailing = false;
  }

  /**
   * A promise that rejects when the connection drops, for racing a request against: the client keeps
   * requests open across a reconnect until their timeout, although their replies are lost with the
   * connection, so without this a publish in flight when NATS dies answers only at the 2 s deadline.
   * Call `cancel` when the request settled.
   */
  whenDisconnected(): { promise: Promise<never>; cancel: () => void } {
    let waiter!: (err: Error) => void;
    const promise = new Promise<never>((_, reject) => {
      waiter = reject;
    });
    promise.catch(() => {}); // only observed through the race
    this.disconnectWaiters.add(waiter);
    return { promise, cancel: () => this.disconnectWaiters.delete(waiter) };
  }

  /** Envelopes (stream messages) waiting or delivered and unacknowledged by the writer consumer. */
  async depth(): Promise<number | undefined> {
    const jsm = this.jsm;
    if (!jsm || !this.isUsable()) return undefined;
    const info = await jsm.consumers.info(this.config.nats.stream, this.config.nats.consumer);
    return info.num_pending + info.num_ack_pending;
  }

  /** Resolves true once usable, false if `signal` aborts or the link closes first. */
  async whenUsable(signal: AbortSignal): Promise<boolean> {
    while (!this.isUsable()) {
      if (signal.aborted || this.closing) return false;
      await sleep(100, undefined, { signal }).catch(() => {});
    }
    return true;
  }

  start(): void {
    this.connectLoop().catch((err) => this.log.error({ err }, 'NATS connection loop failed'));
  }

  /** Stream or consumer may be gone (server lost its store, someone deleted it): check and recreate. */
  reprovision(): void {
    this.reprovisioning ??= this.provisionOnce()
      .catch((err) => this.log.error({ err }, 'NATS re-provisioning failed'))
      .finally(() => {
        this.reprovisioning = undefined;
      });
  }

  /** Called by the publisher and the consumer; the connection closes after the second call. */
  async release(): Promise<void> {
    if (--this.users > 0) return;
    this.closed ??= this.close();
    await this.closed;
  }

  /** Flushes pending acks, then closes the connection. Idempotent. */
  async close(): Promise<void> {
    this.closing = true;
    this.abort.abort();
    clearInterval(this.healthTimer);
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    try {
      await Promise.race([nc.drain(), sleep(5000, undefined, { ref: false })]);
    } catch {
      // a drain on a broken connection rejects: closing is all that is left to do
    }
    await nc.close().catch(() => {});
  }

  private async connectLoop(): Promise<void> {
    const servers = (this.config.natsUrl ?? '').split(',').map((s) => s.trim());
    for (let attempt = 0; !this.closing; attempt++) {
      try {
        this.nc = await connect({
          servers,
          name: `intake-${process.pid}`,
          // FACTS: the client otherwise builds two Error objects per request for async stack traces,
          // ~20 % of CPU under load; errors still carry their message and cause.
          noAsyncTraces: true,
          // Once connected, reconnect forever: an outage turns readiness off, never kills the process.
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          reconnectJitter: 250,
          // A server that stops answering (not just a closed socket) is left within ~20 s.
          pingInterval: 10_000,
          maxPingOut: 2,
          timeout: 2000,
          ...natsAuthOptions(this.config.nats.auth),
        });
        break;
      } catch (err) {
        const delay = Math.min(5000, 250 * 2 ** Math.min(attempt, 5));
        if (attempt % 10 === 0)
          this.log.warn({ err, servers, retryInMs: delay }, 'cannot connect to NATS yet');
        await sleep(delay, undefined, { signal: this.abort.signal }).catch(() => {});
      }
    }
    const nc = this.nc;
    if (!nc || this.closing) {
      await nc?.close().catch(() => {});
      return;
    }
    this.connected = true;
    this.js = jetstream(nc, { timeout: this.config.publishTimeoutMs });
    this.jsm = await jetstreamManager(nc, { timeout: 5000, checkAPI: false });
    const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    this.maxEnvelopeBytes = maxPayload - 4096;
    if (this.maxEnvelopeBytes < this.config.bodyLimit) {
      this.log.warn(
        { maxPayload, bodyLimit: this.config.bodyLimit },
        'NATS max_payload is below INTAKE_BODY_LIMIT_BYTES: the largest accepted bodies will be refused; raise max_payload on the server',
      );
    }
    this.log.info({ server: nc.getServer(), maxPayload }, 'connected to NATS');
    this.watchStatus(nc);
    this.healthTimer = setInterval(() => this.healthCheck(), 1000);
    this.healthTimer.unref();
    await this.provisionLoop();
  }

  private watchStatus(nc: NatsConnection): void {
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          this.connected = false;
          const err = new Error(`disconnected from NATS (${s.server})`);
          for (const w of this.disconnectWaiters) w(err);
          this.disconnectWaiters.clear();
          this.log.warn(
            { server: s.server },
            'disconnected from NATS; publishing answers 503 until it is back',
          );
        } else if (s.type === 'reconnect') {
          this.connected = true;
          this.log.info({ server: s.server }, 'reconnected to NATS');
          this.reprovision();
        }
      }
    })().catch(() => {});
    nc.closed().then(() => {
      this.connected = false;
    });
  }

  /** Provisions until it works; a conflict is reported once as start-up failure, then retried slowly. */
  private async provisionLoop(): Promise<void> {
    for (let attempt = 0; !this.closing && !this.provisioned; attempt++) {
      try {
        await this.provisionOnce();
        this.provisioned = true;
        this.resolveFirst();
        this.log.info(
          { stream: this.config.nats.stream, consumer: this.config.nats.consumer },
          'NATS queue ready',
        );
      } catch (err) {
        const conflict = err instanceof NatsProvisionError;
        // Only a conflict fails start-up; anything else (no JetStream leader yet, timeouts) is retried.
        if (conflict) this.rejectFirst(err);
        this.log.error(
          { err },
          conflict ? 'NATS stream or consumer conflicts with the configuration' : 'NATS provisioning failed',
        );
        const delay = conflict ? 5000 : Math.min(5000, 250 * 2 ** Math.min(attempt, 5));
        await sleep(delay, undefined, { signal: this.abort.signal }).catch(() => {});
      }
    }
  }

  private async provisionOnce(): Promise<void> {
    const { jsm, js } = this;
    if (!jsm || !js) return;
    await provisionQueue(
      jsm,
      this.config.nats,
      // The worker dead-letters after workerMaxAttempts; the server only stops a message that keeps
      // crashing workers (each crash is a delivery) well after that.
      { maxDeliver: this.config.workerMaxAttempts + 10 },
      this.log,
    );
    this.kv ??= await new Kvm(js).open(idempotencyBucket(this.config.nats.stream), { allow_direct: false });
  }

  /** Readiness must come back by itself: while unready no traffic arrives to prove NATS works again. */
  private healthCheck(): void {
    if (!this.publishFailing || !this.connected || !this.jsm) return;
    this.jsm.streams.info(this.config.nats.stream).then(
      () => {
        if (this.publishFailing) this.log.info('NATS answers again; ready');
        this.publishFailing = false;
      },
      () => {},
    );
  }
}
