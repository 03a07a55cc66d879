import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  type V1Pod,
  type V1PodList,
} from '@kubernetes/client-node';
import type { Logger } from '../ops/logger.ts';
import { describeError, withSignal } from './kube-client.ts';
import type { PodWatcherMetrics } from './metrics.ts';
import { NewPodFilter } from './new-pod-filter.ts';

/** Options of a PodInformer. */
export interface PodInformerOptions {
  kubeConfig: KubeConfig;
  /** Namespace to watch; '' for all namespaces. */
  watchNamespace: string;
  logger: Logger;
  metrics: PodWatcherMetrics;
  /** Called once for each new pod (see NewPodFilter for what "new" means). Must not throw. */
  onNewPod: (pod: V1Pod) => void;
  /** First restart delay after an error, doubled per consecutive error (default 250 ms). */
  initialBackoffMs?: number;
  /** Longest restart delay (default 30 s). */
  maxBackoffMs?: number;
  /** Timeout of each list request (default 60 s). */
  listTimeoutMs?: number;
}

/** One leadership term's informer and the state that must not leak into the next term. */
interface Term {
  informer: Informer<V1Pod> & ObjectCache<V1Pod>;
  filter: NewPodFilter;
  abort: AbortController;
  connects: number;
  lists: number;
  stopped: boolean;
  restartTimer?: NodeJS.Timeout;
  starting?: Promise<void>;
}

/**
 * Watches pods with client-node's informer (list, then watch from the list's resourceVersion) and reports
 * new ones. client-node relists by itself on 410 Gone and reconnects when the server closes a watch, but
 * it STOPS on any other error (a dropped connection, a 5xx, a failed list): this class restarts it with
 * exponential backoff. Only the leader runs one; start() and stop() bracket a leadership term.
 */
export class PodInformer {
  private readonly opts: PodInformerOptions;
  private readonly api: CoreV1Api;
  private term: Term | undefined;
  private consecutiveErrors = 0;

  constructor(opts: PodInformerOptions) {
    this.opts = opts;
    this.api = opts.kubeConfig.makeApiClient(CoreV1Api);
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return this.term !== undefined;
  }

  /**
   * Starts watching. Pods in the first list, and pods created before `termStartMs` (wall clock, compared
   * with creationTimestamp), are not reported. Does nothing if already running.
   */
  start(termStartMs: number): void {
    if (this.term) return;
    const { watchNamespace, logger, metrics } = this.opts;
    const path = watchNamespace ? `/api/v1/namespaces/${watchNamespace}/pods` : '/api/v1/pods';
    const abort = new AbortController();
    const filter = new NewPodFilter(termStartMs);
    const listTimeoutMs = this.opts.listTimeoutMs ?? 60_000;

    const list = async (): Promise<V1PodList> => {
      const options = withSignal(AbortSignal.any([abort.signal, AbortSignal.timeout(listTimeoutMs)]));
      const result = watchNamespace
        ? await this.api.listNamespacedPod({ namespace: watchNamespace }, options)
        : await this.api.listPodForAllNamespaces({}, options);
      if (term.lists++ > 0) metrics.relists.inc();
      filter.baseline(result.items);
      this.consecutiveErrors = 0;
      logger.debug(
        { pods: result.items.length, resourceVersion: result.metadata?.resourceVersion },
        'listed pods',
      );
      return result;
    };

    const term: Term = {
      informer: makeInformer<V1Pod>(this.opts.kubeConfig, path, list),
      filter,
      abort,
      connects: 0,
      lists: 0,
      stopped: false,
    };
    this.term = term;

    const seen = (type: 'add' | 'update') => (pod: V1Pod) => {
      if (term.stopped) return;
      metrics.watchEvents.inc({ type });
      this.consecutiveErrors = 0;
      // Exceptions thrown here would be swallowed by client-node's watch line parser: report them.
      try {
        if (filter.isNew(pod)) this.opts.onNewPod(pod);
      } catch (err) {
        logger.error({ err }, 'handling a pod notification failed');
      }
    };
    term.informer.on('add', seen('add'));
    term.informer.on('update', seen('update'));
    term.informer.on('delete', (pod: V1Pod) => {
      if (term.stopped) return;
      metrics.watchEvents.inc({ type: 'delete' });
      filter.forget(pod);
    });
    term.informer.on('connect', () => {
      if (term.stopped) return;
      if (term.connects++ > 0) {
        metrics.watchRestarts.inc();
        logger.info({ connects: term.connects }, 'pod watch reconnecting');
      }
    });
    term.informer.on('error', (err: unknown) => {
      if (term.stopped) return;
      metrics.watchErrors.inc();
      this.scheduleRestart(term, err);
    });

    logger.info({ namespace: watchNamespace || '(all)' }, 'starting pod informer');
    this.begin(term);
  }

  /** Stops watching and waits for the informer to let go of its connection. Safe to call twice. */
  async stop(): Promise<void> {
    const term = this.term;
    if (!term) return;
    this.term = undefined;
    term.stopped = true;
    clearTimeout(term.restartTimer);
    term.abort.abort();
    await term.informer.stop();
    // client-node does not re-check `stopped` after a list completes, so a start in flight can still open
    // a watch: wait for it (bounded; the list was aborted above) and stop again.
    if (term.starting) {
      await Promise.race([term.starting, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      await term.informer.stop();
    }
    this.opts.logger.info('stopped pod informer');
  }

  private begin(term: Term): void {
    term.starting = term.informer.start().catch((err: unknown) => {
      // Errors normally arrive through the 'error' callback; this catches a throw from start() itself.
      if (term.stopped) return;
      this.opts.metrics.watchErrors.inc();
      this.scheduleRestart(term, err);
    });
  }

  private scheduleRestart(term: Term, err: unknown): void {
    if (term.restartTimer || term.stopped) return;
    const initial = this.opts.initialBackoffMs ?? 250;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const ceiling = Math.min(max, initial * 2 ** Math.min(this.consecutiveErrors, 20));
    // Half fixed, half random, so replicas restarted by the same outage do not reconnect in step.
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.consecutiveErrors++;
    this.opts.logger.warn({ err: describeError(err), retryInMs: delay }, 'pod watch failed; restarting');
    term.restartTimer = setTimeout(() => {
      term.restartTimer = undefined;
      if (!term.stopped) this.begin(term);
    }, delay);
  }
}
