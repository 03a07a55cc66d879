import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../ops/logger.ts';
import type { PodWatcherConfig } from './config.ts';
import { type ElectionOutcome, LeaderElector } from './leader-election.ts';
import { KubeLeaseLock, type LeaseLock } from './lease-lock.ts';
import { createMetrics, type PodWatcherMetrics } from './metrics.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';
import { PodInformer } from './pod-informer.ts';
import { logNewPod } from './pod-log.ts';

/** What the pod watcher needs from outside its configuration. */
export interface PodWatcherDeps {
  logger: Logger;
  kubeConfig: KubeConfig;
  /** Replaces the Lease on the API server (tests). */
  lock?: LeaseLock;
}

/** A built pod watcher: start() it, stop() it; `done` settles when it ends by itself. */
export interface PodWatcher {
  readonly metrics: PodWatcherMetrics;
  readonly elector: LeaderElector;
  /** Binds the metrics server and starts campaigning. Resolves once the server listens. */
  start(): Promise<void>;
  /** The bound metrics port (after start()). */
  readonly metricsPort: number;
  /**
   * Settles with 'lost' if leadership was lost (the process should then exit non-zero so Kubernetes
   * restarts it with a clean slate), or 'stopped' after stop().
   */
  readonly done: Promise<ElectionOutcome>;
  /**
   * Stops in order: stop campaigning/renewing, stop the informer (no more pod logs), release the Lease so
   * a standby takes over at once, close the metrics server. Safe to call twice.
   */
  stop(): Promise<void>;
}

/** Wires config, elector, informer, metrics and the HTTP server together. Starts nothing. */
export function buildPodWatcher(config: PodWatcherConfig, deps: PodWatcherDeps): PodWatcher {
  const { logger, kubeConfig } = deps;
  const metrics = createMetrics(config.identity);
  const lock = deps.lock ?? new KubeLeaseLock(kubeConfig, config.leaseNamespace, config.leaseName);
  const abort = new AbortController();
  let server: MetricsServer | undefined;
  let stopping: Promise<void> | undefined;
  let informerStopped: Promise<void> = Promise.resolve();

  const informer = new PodInformer({
    kubeConfig,
    watchNamespace: config.watchNamespace,
    logger,
    metrics,
    onNewPod(pod: V1Pod) {
      // Leadership is re-checked against the local clock before every log line: a replica that was frozen
      // past its renew deadline may receive buffered watch events before its renew loop notices it lost.
      if (!elector.isLeader()) return;
      logNewPod(logger, pod);
      metrics.podsCreated.inc({ namespace: pod.metadata?.namespace ?? '' });
    },
  });

  const elector = new LeaderElector({
    identity: config.identity,
    lock,
    logger,
    leaseDurationMs: config.leaseDurationMs,
    renewDeadlineMs: config.renewDeadlineMs,
    retryPeriodMs: config.retryPeriodMs,
    onStartedLeading() {
      metrics.isLeader.set(1);
      metrics.leaderTransitions.inc();
      informer.start(Date.now());
    },
    onStoppedLeading(outcome) {
      metrics.isLeader.set(0);
      logger[outcome === 'lost' ? 'error' : 'info']({ outcome }, 'stopped leading');
      informerStopped = informer.stop();
    },
  });

  let resolveDone: (outcome: ElectionOutcome) => void = () => {};
  const done = new Promise<ElectionOutcome>((resolve) => {
    resolveDone = resolve;
  });
  let running: Promise<ElectionOutcome> | undefined;

  return {
    metrics,
    elector,
    get metricsPort() {
      return server?.port ?? 0;
    },
    done,
    async start() {
      metrics.isLeader.set(0);
      server = await startMetricsServer({
        registry: metrics.registry,
        isReady: () => stopping === undefined && elector.hasRunCycle(),
        port: config.metricsPort,
        host: config.host,
        logger,
      });
      running = elector.run(abort.signal);
      running.then(resolveDone, () => resolveDone('lost'));
    },
    stop() {
      stopping ??= (async () => {
        abort.abort();
        await running;
        await informer.stop();
        await informerStopped;
        await elector.release(Math.min(config.renewDeadlineMs, 5000));
        await server?.close();
        resolveDone('stopped');
      })();
      return stopping;
    },
  };
}
