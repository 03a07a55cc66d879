import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError, type Env, int, logLevel, matching, optionalText, text } from '../config/readers.ts';
import type { SettingTable } from '../config/settings.ts';

/** Where Kubernetes mounts the namespace of the pod's service account. */
export const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/**
 * client-go's jitter factor: a candidate waits `retryPeriod × (1 + rand × 1.2)` between attempts, so the
 * renew deadline has to leave room for at least one jittered retry.
 */
export const JITTER_FACTOR = 1.2;

// RFC 1123 label / subdomain, which is what Kubernetes accepts for namespaces and Lease names.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_NAME = 'a lower-case DNS name such as pod-watcher';

/**
 * Every setting the pod watcher reads, declared once with intake's readers (src/config/readers.ts);
 * docs/pod-watcher.md#configuration is generated from it (scripts/gen-settings-docs.ts).
 */
export const POD_WATCHER_SETTINGS = {
  NAMESPACE: {
    reader: matching(DNS_LABEL, '', DNS_NAME),
    default: 'the pod’s namespace (service account mount), else `default`',
    doc: 'namespace of the Lease',
  },
  LEASE_NAME: { reader: matching(DNS_SUBDOMAIN, 'pod-watcher', DNS_NAME), doc: 'name of the Lease' },
  POD_NAME: {
    reader: optionalText(),
    default: 'hostname + random suffix',
    doc: 'this replica’s identity in the Lease',
  },
  LEASE_DURATION_MS: {
    reader: int(15_000, 1, 3_600_000),
    doc:
      'how long a Lease holds after its last observed change; must be greater than `RENEW_DEADLINE_MS` ' +
      '(written to the Lease in whole seconds, rounded up)',
  },
  RENEW_DEADLINE_MS: {
    reader: int(10_000, 1, 3_600_000),
    doc:
      'how long the leader keeps trying to renew before it gives up; must be greater than 1.2 × ' +
      '`RETRY_PERIOD_MS` (client-go’s jitter factor)',
  },
  RETRY_PERIOD_MS: {
    reader: int(2_000, 1, 3_600_000),
    doc: 'the leader renews this often; standbys poll every 1–2.2 × this',
  },
  WATCH_NAMESPACE: {
    reader: matching(DNS_LABEL, '', DNS_NAME),
    default: 'empty (all namespaces)',
    doc: 'watch only this namespace',
  },
  METRICS_PORT: {
    reader: int(9090, 0, 65535),
    doc: 'port of /metrics, /healthz and /readyz (0 picks a free port)',
  },
  HOST: { reader: text('0.0.0.0', 'an address'), doc: 'address the metrics server binds to' },
  LOG_LEVEL: { reader: logLevel(), doc: 'pino level (`debug` also logs every list and lease conflict)' },
} satisfies SettingTable;

/** Everything the pod watcher reads from its environment, validated. */
export interface PodWatcherConfig {
  /** Namespace of the Lease (`NAMESPACE`). */
  leaseNamespace: string;
  /** Name of the Lease (`LEASE_NAME`). */
  leaseName: string;
  /** This replica's identity in the Lease (`POD_NAME`). */
  identity: string;
  /** `LEASE_DURATION_MS`, `RENEW_DEADLINE_MS`, `RETRY_PERIOD_MS`. */
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** Namespace whose pods are watched (`WATCH_NAMESPACE`; empty means all namespaces). */
  watchNamespace: string;
  /** Port of /metrics, /healthz and /readyz (`METRICS_PORT`). */
  metricsPort: number;
  /** Address the metrics server binds (`HOST`). */
  host: string;
  /** pino level (`LOG_LEVEL`). */
  logLevel: string;
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
 * retry in before giving up. Each broken rule adds a problem naming the variable to change.
 */
export function leaseTimingProblems(t: LeaseTimings, problems: string[] = []): string[] {
  if (t.retryPeriodMs <= 0)
    problems.push(`RETRY_PERIOD_MS must be > 0 (got ${t.retryPeriodMs}); set e.g. RETRY_PERIOD_MS=2000`);
  if (t.leaseDurationMs <= t.renewDeadlineMs) {
    problems.push(
      `LEASE_DURATION_MS (${t.leaseDurationMs}) must be greater than RENEW_DEADLINE_MS (${t.renewDeadlineMs}); ` +
        `set LEASE_DURATION_MS above ${t.renewDeadlineMs} or lower RENEW_DEADLINE_MS (defaults 15000 and 10000)`,
    );
  }
  const minRenew = Math.floor(JITTER_FACTOR * t.retryPeriodMs);
  if (t.renewDeadlineMs <= minRenew) {
    problems.push(
      `RENEW_DEADLINE_MS (${t.renewDeadlineMs}) must be greater than ${JITTER_FACTOR} × RETRY_PERIOD_MS ` +
        `(${t.retryPeriodMs}) = ${minRenew}; set RENEW_DEADLINE_MS above ${minRenew} or lower RETRY_PERIOD_MS`,
    );
  }
  return problems;
}

/** The same rules, as a ConfigError when any is broken. */
export function validateLeaseTimings(t: LeaseTimings): void {
  const problems = leaseTimingProblems(t);
  if (problems.length) throw new ConfigError(problems);
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

/**
 * Reads and validates the pod watcher's configuration from `env`. The only place that reads the
 * environment; every problem is collected, and all of them are thrown at once as one ConfigError.
 */
export function loadConfig(env: Env = process.env, sources: ConfigSources = {}): PodWatcherConfig {
  const problems: string[] = [];
  const get = <K extends keyof typeof POD_WATCHER_SETTINGS>(name: K) =>
    POD_WATCHER_SETTINGS[name].reader.read(env, name, problems) as ReturnType<
      (typeof POD_WATCHER_SETTINGS)[K]['reader']['read']
    >;
  const timings: LeaseTimings = {
    leaseDurationMs: get('LEASE_DURATION_MS'),
    renewDeadlineMs: get('RENEW_DEADLINE_MS'),
    retryPeriodMs: get('RETRY_PERIOD_MS'),
  };
  const config: PodWatcherConfig = {
    leaseNamespace:
      get('NAMESPACE') || ((sources.inClusterNamespace ?? readInClusterNamespace)() ?? 'default'),
    leaseName: get('LEASE_NAME'),
    // client-go's convention for an identity that is unique even when hostnames repeat (hostname_suffix).
    identity: get('POD_NAME') ?? `${(sources.hostname ?? hostname)()}_${randomBytes(4).toString('hex')}`,
    ...timings,
    watchNamespace: get('WATCH_NAMESPACE'),
    metricsPort: get('METRICS_PORT'),
    host: get('HOST'),
    logLevel: get('LOG_LEVEL'),
  };
  // Judged on what was read: a value refused above stands at its default meanwhile.
  leaseTimingProblems(timings, problems);
  if (problems.length) throw new ConfigError(problems);
  return config;
}
