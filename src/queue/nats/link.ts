import { setTimeout as sleep } from 'node:timers/promises';
import {
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import { natsConnectOptions } from './auth.ts';
import { isNoResponders, isStoreFull, NO_ROOM_CODES } from './errors.ts';
import { idempotencyBucket, NatsProvisionError, probeSubject, provisionQueue } from './provision.ts';
import type { NatsQueueSettings } from './settings.ts';
import { NatsStreamMonitor, streamHasRoom } from './stream-monitor.ts';

/** How long start-up waits for NATS before it goes on unready. */
export const STARTUP_WAIT_MS = 3000;
/** The readiness probe: a write to the probe stream this often, and how long it may take. */
const PROBE_EVERY_MS = 1000;
const PROBE_TIMEOUT_MS = 900;
/** Stream usage and depth are read (and workers trim) this often. */
const STATS_EVERY_MS = 5000;

/** What NatsLink needs to know about its process. */
export interface NatsLinkOptions {
  /** The process publishes (API): readiness includes "a publish can succeed". */
  publishes: boolean;
  /** The process trims acknowledged messages (worker). */
  trims: boolean;
  metrics: Metrics | undefined;
}

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
  /** The last probe write to the store succeeded (or none failed yet). */
  private storeWritable = true;
  /** The message stream is at its own max_msgs/max_bytes (a publish was refused, or usage says so). */
  private streamFull = false;
  private closing = false;
  private readonly abort = new AbortController();
  private resolveFirst!: () => void;
  private rejectFirst!: (err: unknown) => void;
  private reprovisioning: Promise<void> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private closed: Promise<void> | undefined;
  private readonly disconnectWaiters = new Set<(err: Error) => void>();
  private readonly monitor: NatsStreamMonitor;

  constructor(
    readonly settings: NatsQueueSettings,
    readonly log: Logger,
    private readonly opts: NatsLinkOptions = { publishes: true, trims: true, metrics: undefined },
  ) {
    this.firstReady = new Promise((resolve, reject) => {
      this.resolveFirst = resolve;
      this.rejectFirst = reject;
    });
    this.firstReady.catch(() => {}); // observed by openNatsQueue; later failures are logged instead
    this.monitor = new NatsStreamMonitor({
      nats: settings.nats,
      trim: opts.trims,
      metrics: opts.metrics,
      log,
      onRoom: (room) => this.setStreamFull(!room),
    });
  }

  /**
   * Connected and provisioned; in a publishing process also: a publish can succeed now. That is, the
   * last publish did not fail (or NATS answered since), the last probe write to the store succeeded,
   * and the stream has room under its own limits. Load balancers then stop sending requests that could
   * only be refused, and resume by themselves once the operator made room.
   */
  isReady(): boolean {
    const base = this.connected && this.provisioned && !this.closing;
    if (!this.opts.publishes) return base && !this.publishFailing;
    return base && !this.publishFailing && this.storeWritable && !this.streamFull;
  }

  /** Connected now, provisioned or not: the stream can be read. */
  isConnected(): boolean {
    return this.connected && !this.closing;
  }

  /** Connected and provisioned (publishing may still be failing): the worker can pull. */
  isUsable(): boolean {
    return this.connected && this.provisioned && !this.closing;
  }

  /** A publish failed: not ready until a health check against the stream succeeds. */
  markPublishFailed(err: unknown): void {
    if (isStoreFull(err)) this.setStoreWritable(false, err);
    else if (err instanceof JetStreamApiError && err.code === NO_ROOM_CODES.streamStoreFailed)
      this.setStreamFull(true);
    if (!this.publishFailing) this.log.warn({ err }, 'NATS publish failed; readiness off until NATS answers');
    this.publishFailing = true;
  }

  markPublishOk(): void {
    this.publishFailing = false;
    this.setStreamFull(false);
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
    const info = await jsm.consumers.info(this.settings.nats.stream, this.settings.nats.consumer);
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

  /** Flushes pending acks, then closes the connection. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.closeOnce();
    return this.closed;
  }

  private async closeOnce(): Promise<void> {
    this.closing = true;
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
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
    const { servers } = this.settings;
    for (let attempt = 0; !this.closing; attempt++) {
      try {
        this.nc = await connect({
          servers,
          name: `intake-${process.pid}`,
          // The client otherwise builds two Error objects per request for async stack traces (a fifth of
          // the CPU under load: docs/capacity-plan.md); errors still carry their message and cause.
          noAsyncTraces: true,
          // Once connected, reconnect forever: an outage turns readiness off, never kills the process.
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          reconnectJitter: 250,
          // A server that stops answering (not just a closed socket) is left within ~20 s.
          pingInterval: 10_000,
          maxPingOut: 2,
          timeout: 2000,
          ...natsConnectOptions(this.settings.nats),
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
    this.js = jetstream(nc, { timeout: this.settings.publishTimeoutMs });
    this.jsm = await jetstreamManager(nc, { timeout: 5000, checkAPI: false });
    const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    this.maxEnvelopeBytes = maxPayload - 4096;
    if (this.maxEnvelopeBytes < this.settings.bodyLimitBytes) {
      this.log.warn(
        { maxPayload, bodyLimit: this.settings.bodyLimitBytes },
        'NATS max_payload is below INTAKE_BODY_LIMIT_BYTES: the largest accepted bodies will be refused; raise max_payload on the server',
      );
    }
    this.log.info({ server: nc.getServer(), maxPayload }, 'connected to NATS');
    this.watchStatus(nc);
    this.every(PROBE_EVERY_MS, () => this.healthCheck());
    this.every(STATS_EVERY_MS, async () => {
      if (this.isUsable() && this.jsm) await this.monitor.tick(this.jsm);
    });
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
        // Usage and depth at once rather than after the first interval.
        if (this.jsm) void this.monitor.tick(this.jsm);
        this.log.info(
          { stream: this.settings.nats.stream, consumer: this.settings.nats.consumer },
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
    await provisionQueue(jsm, this.settings.nats, { maxDeliver: this.settings.maxDeliver }, this.log);
    this.kv ??= await new Kvm(js).open(idempotencyBucket(this.settings.nats.stream), { allow_direct: false });
  }

  /** Runs `fn` every `ms` until the link closes, one run at a time; errors are `fn`'s to handle. */
  private every(ms: number, fn: () => Promise<void>): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.closing) return;
      running = true;
      fn()
        .catch((err) => this.log.error({ err }, 'NATS periodic check failed'))
        .finally(() => {
          running = false;
        });
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /**
   * Readiness must come back by itself: while unready no traffic arrives to prove NATS works again.
   * Every second a one-message write to the probe stream (same store, account and replicas as the
   * message stream) asks "would a publish be stored?": it fails when the server's store is full or no
   * quorum answers, which a stream-info request (served from memory) does not notice. While a publish
   * failed or the stream was full, the stream itself is read too.
   */
  private async healthCheck(): Promise<void> {
    const { js, jsm } = this;
    if (!this.connected || !this.provisioned || !js || !jsm) return;
    try {
      await js.publish(probeSubject(this.settings.nats), '', { timeout: PROBE_TIMEOUT_MS });
      this.setStoreWritable(true);
    } catch (err) {
      this.setStoreWritable(false, err);
      // No stream on the probe subject: someone deleted it. Recreate what is missing.
      if (isNoResponders(err)) this.reprovision();
      return;
    }
    if (!this.publishFailing && !this.streamFull) return;
    const info = await jsm.streams.info(this.settings.nats.stream).catch(() => undefined);
    if (!info) return;
    const wasFailing = this.publishFailing;
    this.publishFailing = false;
    this.setStreamFull(!streamHasRoom(info));
    if (wasFailing && this.isReady()) this.log.info('NATS answers again; ready');
  }

  private setStoreWritable(writable: boolean, err?: unknown): void {
    this.opts.metrics?.storeWritable.set({ stream: this.settings.nats.stream }, writable ? 1 : 0);
    if (writable === this.storeWritable) return;
    this.storeWritable = writable;
    if (writable) this.log.info('the JetStream store takes writes again; ready');
    else
      this.log.error(
        { err },
        'the JetStream store refuses writes (full, or no quorum): readiness off, ingest answers 503',
      );
  }

  private setStreamFull(full: boolean): void {
    if (full === this.streamFull) return;
    this.streamFull = full;
    if (full)
      this.log.error(
        { stream: this.settings.nats.stream },
        'the NATS stream is full (NATS_MAX_BYTES/NATS_MAX_MSGS): ingest answers 503 until workers catch up',
      );
    else this.log.info({ stream: this.settings.nats.stream }, 'the NATS stream has room again');
  }
}
