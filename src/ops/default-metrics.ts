import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * prom-client's gauges that carry a counter's `_total` suffix, which `promtool check metrics` flags (and
 * which Prometheus's naming rules forbid: a `_total` series is read as a counter, so `rate()` on it looks
 * right and is wrong). Upstream keeps them for compatibility (prometheus/client_js#283, where the
 * maintainers would rather delete them) and has no option to leave them out. Each is the sum of a
 * by-type gauge that stays, so nothing is lost: `sum(nodejs_active_handles)` etc.
 */
export const MISNAMED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/** prom-client's default process and Node.js metrics in `registry`, less MISNAMED_DEFAULT_METRICS. */
export function collectProcessMetrics(
  registry: Registry,
  options: { eventLoopMonitoringPrecision?: number } = {},
): void {
  collectDefaultMetrics({ ...options, register: registry });
  for (const name of MISNAMED_DEFAULT_METRICS) registry.removeSingleMetric(name);
}
