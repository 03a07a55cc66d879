import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../ops/default-metrics.ts';

/** The pod watcher's Prometheus metrics, in a Registry of its own (never prom-client's global one). */
export interface PodWatcherMetrics {
  registry: Registry;
  /** New pods logged by this replica, by namespace. */
  podsCreated: Counter<'namespace'>;
  /** 1 while this replica leads, else 0. */
  isLeader: Gauge;
  /** Times this replica became leader (summed over replicas: the number of leadership changes). */
  leaderTransitions: Counter;
  /** Watch (re)connections after the first of a term: server-side closes, 410 relists, error restarts. */
  watchRestarts: Counter;
  /** Errors that stopped the informer (it stops on any error but 410 and is restarted with backoff). */
  watchErrors: Counter;
  /** Informer notifications by type (add, update, delete), including those a relist produces. */
  watchEvents: Counter<'type'>;
  /** Full pod lists after the first of a term (410 Gone, or a restart that lost its resourceVersion). */
  relists: Counter;
}

/** Creates the metrics, plus prom-client's default process metrics, in a new Registry. */
export function createMetrics(identity: string): PodWatcherMetrics {
  const registry = new Registry();
  // Lets a dashboard tell replicas apart even when scraped through a Service.
  registry.setDefaultLabels({ replica: identity });
  collectProcessMetrics(registry);
  const registers = [registry];
  return {
    registry,
    podsCreated: new Counter({
      name: 'pod_watcher_pods_created_total',
      help: 'New pods logged by this replica while leader, by namespace.',
      labelNames: ['namespace'],
      registers,
    }),
    isLeader: new Gauge({
      name: 'pod_watcher_is_leader',
      help: '1 if this replica currently holds the leader lease, else 0.',
      registers,
    }),
    leaderTransitions: new Counter({
      name: 'pod_watcher_leader_transitions_total',
      help: 'Times this replica became leader.',
      registers,
    }),
    watchRestarts: new Counter({
      name: 'pod_watcher_watch_restarts_total',
      help: 'Pod watch reconnections after the first connection of a leadership term.',
      registers,
    }),
    watchErrors: new Counter({
      name: 'pod_watcher_watch_errors_total',
      help: 'Errors that stopped the pod informer (each is followed by a restart with backoff).',
      registers,
    }),
    watchEvents: new Counter({
      name: 'pod_watcher_watch_events_total',
      help: 'Pod informer notifications by type (add, update, delete).',
      labelNames: ['type'],
      registers,
    }),
    relists: new Counter({
      name: 'pod_watcher_relists_total',
      help: 'Full pod lists after the first of a leadership term (e.g. after 410 Gone).',
      registers,
    }),
  };
}
