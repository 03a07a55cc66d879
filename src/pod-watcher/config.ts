import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** Where Kubernetes mounts the namespace of the pod's service account. */
export const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/**
 * client-go's jitter factor: a candidate waits `retryPeriod × (1 + rand × 1.2)` between attempts, so the
 * renew deadline has to leave room for at least one jittered retry.
 */
export const JITTER_FACTOR = 1.2;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Everything the pod watcher reads from its environment, validated. */
export interface PodWatcherConfig {
  /** Namespace of the Lease (`NAMESPACE`; default: the pod's own namespace in a cluster, else `default`). */
  leaseNamespace: string;
  /** Name of the Lease (`LEASE_NAME`; default `pod-watcher`). */
  leaseName: string;
  /** This replica's identity in the Lease (`POD_NAME`; default hostname + random suffix). */
  identity: string;
  /** How long a Lease holds after its last observed change (`LEASE_DURATION_MS`; default 15000). */
  leaseDurationMs: number;
  /** How long the leader keeps trying to renew before it gives up (`RENEW_DEADLINE_MS`; default 10000). */
  renewDeadlineMs: number;
  /** Pause between acquire/renew attempts (`RETRY_PERIOD_MS`; default 2000). */
  retryPeriodMs: number;
  /** Namespace whose pods are watched (`WATCH_NAMESPACE`; empty, the default, means all namespaces). */
  watchNamespace: string;
  /** Port of /metrics, /healthz and /readyz (`METRICS_PORT`; default 9090; 0 picks a free port). */
  metricsPort: number;
  /** Address the metrics server binds (`HOST`; default `0.0.0.0`). */
  host: string;
  /** pino level (`LOG_LEVEL`; default `info`). */
  logLevel: string;
}

/** A configuration value is missing or wrong; the message says which variable to set and how. */
export class ConfigError extends Error {
  readonly code = 'POD_WATCHER_CONFIG';
  override name = 'ConfigError';
}

/** Lease timings in milliseconds, as the elector uses them. */
export interface LeaseTimings {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/**
 * client-go's rules (`NewLeaderElector`): leaseDuration > renewDeadline > JITTER_FACTOR × retryPeriod.
 * A leader that gives up renewing must do so before a standby may take over, and it must get at least one
 * retry in before giving up. Throws a ConfigError naming the variable to change.
 */
export function validateLeaseTimings(t: LeaseTimings): void {
  if (t.retryPeriodMs <= 0) {
    throw new ConfigError(
      `RETRY_PERIOD_MS must be > 0 (got ${t.retryPeriodMs}); set e.g. RETRY_PERIOD_MS=2000`,
    );
  }
  if (t.leaseDurationMs <= t.renewDeadlineMs) {
    throw new ConfigError(
      `LEASE_DURATION_MS (${t.leaseDurationMs}) must be greater than RENEW_DEADLINE_MS (${t.renewDeadlineMs}); ` +
        `set LEASE_DURATION_MS above ${t.renewDeadlineMs} or lower RENEW_DEADLINE_MS (defaults 15000 and 10000)`,
    );
  }
  const minRenew = Math.floor(JITTER_FACTOR * t.retryPeriodMs);
  if (t.renewDeadlineMs <= minRenew) {
    throw new ConfigError(
      `RENEW_DEADLINE_MS (${t.renewDeadlineMs}) must be greater than ${JITTER_FACTOR} × RETRY_PERIOD_MS ` +
        `(${t.retryPeriodMs}) = ${minRenew}; set RENEW_DEADLINE_MS above ${minRenew} or lower RETRY_PERIOD_MS`,
    );
  }
}

/** Things outside the environment that defaults depend on; tests replace them. */
export interface ConfigSources {
  hostname?: () => string;
  /** Returns the in-cluster namespace, or undefined outside a cluster. */
  inClusterNamespace?: () => string | undefined;
}

function readInClusterNamespace(): string | undefined {
  if (!existsSync(IN_CLUSTER_NAMESPACE_FILE)) return undefined;
  const ns = readFileSync(IN_CLUSTER_NAMESPACE_FILE, 'utf8').trim();
  return ns || undefined;
}

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) {
    throw new ConfigError(`${name} must be a whole number between ${min} and ${max} (got "${raw}")`);
  }
  const n = Number(raw);
  if (n < min || n > max) {
    throw new ConfigError(`${name} must be a whole number between ${min} and ${max} (got ${n})`);
  }
  return n;
}

// RFC 1123 label / subdomain, which is what Kubernetes accepts for namespaces and Lease names.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function nameFrom(env: NodeJS.ProcessEnv, name: string, fallback: string, pattern: RegExp): string {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!pattern.test(raw)) {
    throw new ConfigError(`${name} must be a lower-case DNS name such as "pod-watcher" (got "${raw}")`);
  }
  return raw;
}

/**
 * Reads and validates the pod watcher's configuration from `env`. The only place that reads the
 * environment; every error is a ConfigError whose one-line message says what to set.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  sources: ConfigSources = {},
): PodWatcherConfig {
  const inClusterNamespace = sources.inClusterNamespace ?? readInClusterNamespace;
  const host = sources.hostname ?? hostname;

  const timings: LeaseTimings = {
    leaseDurationMs: intFrom(env, 'LEASE_DURATION_MS', 15_000, 1, 3_600_000),
    renewDeadlineMs: intFrom(env, 'RENEW_DEADLINE_MS', 10_000, 1, 3_600_000),
    retryPeriodMs: intFrom(env, 'RETRY_PERIOD_MS', 2_000, 1, 3_600_000),
  };
  validateLeaseTimings(timings);

  const logLevel = env.LOG_LEVEL?.trim() || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }

  // client-go's convention for an identity that is unique even when hostnames repeat (hostname_suffix).
  const identity = env.POD_NAME?.trim() || `${host()}_${randomBytes(4).toString('hex')}`;

  return {
    leaseNamespace: nameFrom(env, 'NAMESPACE', inClusterNamespace() ?? 'default', DNS_LABEL),
    leaseName: nameFrom(env, 'LEASE_NAME', 'pod-watcher', DNS_SUBDOMAIN),
    identity,
    ...timings,
    watchNamespace: nameFrom(env, 'WATCH_NAMESPACE', '', DNS_LABEL),
    metricsPort: intFrom(env, 'METRICS_PORT', 9090, 0, 65535),
    host: env.HOST?.trim() || '0.0.0.0',
    logLevel,
  };
}
