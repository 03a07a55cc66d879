import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/config.ts';
import { loadConfig, validateLeaseTimings } from '../../src/pod-watcher/config.ts';

const sources = { hostname: () => 'node-7', inClusterNamespace: () => undefined };

/** The problems loadConfig reports for `env`, each one line. */
function problems(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env, sources);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    for (const p of err.problems) assert.doesNotMatch(p, /\n/, 'each problem is one line');
    return err.problems;
  }
  assert.fail('expected loadConfig to throw');
}

/** The one problem loadConfig reports for `env`. */
function configError(env: NodeJS.ProcessEnv): string {
  const found = problems(env);
  assert.equal(found.length, 1, found.join('\n'));
  return found[0]!;
}

describe('pod watcher configuration', () => {
  it('has client-go timings and sensible defaults', () => {
    const c = loadConfig({}, sources);
    assert.equal(c.leaseNamespace, 'default');
    assert.equal(c.leaseName, 'pod-watcher');
    assert.match(c.identity, /^node-7_[0-9a-f]{8}$/);
    assert.deepEqual(
      [
        c.leaseDurationMs,
        c.renewDeadlineMs,
        c.retryPeriodMs,
        c.metricsPort,
        c.host,
        c.watchNamespace,
        c.logLevel,
      ],
      [15_000, 10_000, 2_000, 9090, '0.0.0.0', '', 'info'],
    );
  });

  it('takes the lease namespace from the service account mount, and NAMESPACE over that', () => {
    const inCluster = { ...sources, inClusterNamespace: () => 'monitoring' };
    assert.equal(loadConfig({}, inCluster).leaseNamespace, 'monitoring');
    assert.equal(loadConfig({ NAMESPACE: 'ops' }, inCluster).leaseNamespace, 'ops');
  });

  it('reads every variable', () => {
    const c = loadConfig(
      {
        NAMESPACE: 'ops',
        LEASE_NAME: 'watcher.example.com',
        POD_NAME: 'pod-watcher-abc12',
        LEASE_DURATION_MS: '3000',
        RENEW_DEADLINE_MS: '2000',
        RETRY_PERIOD_MS: '250',
        WATCH_NAMESPACE: 'apps',
        METRICS_PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'debug',
      },
      sources,
    );
    assert.deepEqual(c, {
      leaseNamespace: 'ops',
      leaseName: 'watcher.example.com',
      identity: 'pod-watcher-abc12',
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 250,
      watchNamespace: 'apps',
      metricsPort: 0,
      host: '127.0.0.1',
      logLevel: 'debug',
    });
  });

  it('requires the lease duration to exceed the renew deadline, and says what to set', () => {
    const msg = configError({ LEASE_DURATION_MS: '10000' });
    assert.equal(
      msg,
      'LEASE_DURATION_MS (10000) must be greater than RENEW_DEADLINE_MS (10000); set LEASE_DURATION_MS ' +
        'above 10000 or lower RENEW_DEADLINE_MS (defaults 15000 and 10000)',
    );
  });

  it('requires the renew deadline to exceed 1.2 × the retry period, and says what to set', () => {
    const msg = configError({ RETRY_PERIOD_MS: '9000' });
    assert.equal(
      msg,
      'RENEW_DEADLINE_MS (10000) must be greater than 1.2 × RETRY_PERIOD_MS (9000) = 10800; ' +
        'set RENEW_DEADLINE_MS above 10800 or lower RETRY_PERIOD_MS',
    );
    // The boundary is exclusive, as in client-go.
    assert.throws(() =>
      validateLeaseTimings({ leaseDurationMs: 5000, renewDeadlineMs: 2400, retryPeriodMs: 2000 }),
    );
    validateLeaseTimings({ leaseDurationMs: 5000, renewDeadlineMs: 2401, retryPeriodMs: 2000 });
  });

  it('rejects values that are not whole numbers in range, naming the variable', () => {
    assert.equal(
      configError({ RETRY_PERIOD_MS: '2s' }),
      'RETRY_PERIOD_MS="2s" is not valid: set a whole number from 1 to 3600000',
    );
    assert.equal(
      configError({ METRICS_PORT: '70000' }),
      'METRICS_PORT="70000" is not valid: set a whole number from 0 to 65535',
    );
    assert.match(configError({ LEASE_DURATION_MS: '0' }), /^LEASE_DURATION_MS="0" is not valid: set a whole/);
  });

  it('rejects names Kubernetes would reject, and unknown log levels', () => {
    const dnsName = (name: string) => new RegExp(`^${name}=".*" is not valid: set a lower-case DNS name`);
    assert.match(configError({ NAMESPACE: 'Prod_NS' }), dnsName('NAMESPACE'));
    assert.match(configError({ WATCH_NAMESPACE: 'a/b' }), dnsName('WATCH_NAMESPACE'));
    assert.match(configError({ LEASE_NAME: '-x' }), dnsName('LEASE_NAME'));
    assert.match(
      configError({ LOG_LEVEL: 'verbose' }),
      /^LOG_LEVEL="verbose" is not valid: set one of fatal, error, warn, info/,
    );
  });

  it('reports every problem at once, with the readers and the one ConfigError intake uses', () => {
    assert.deepEqual(
      problems({ RETRY_PERIOD_MS: '2s', NAMESPACE: 'Prod_NS', LEASE_DURATION_MS: '10000' }).map(
        (p) => p.split(/[= ]/)[0],
      ),
      ['RETRY_PERIOD_MS', 'NAMESPACE', 'LEASE_DURATION_MS'],
    );
  });
});
