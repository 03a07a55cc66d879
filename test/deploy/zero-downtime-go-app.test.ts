import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { needTool, REPO } from './tools.ts';
import { type AppUnderTest, assertZeroDowntime, runZeroDowntime } from './zero-downtime.ts';

const skip = needTool('go', ['version']) ?? needTool('nginx', ['-v']);

describe('go-app: zero downtime behind nginx while the old instance is replaced', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'zd-go-app-'));
  const bin = join(dir, 'go-app');
  after(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Without an endpoint removal (passive) nothing delays SIGTERM, so the app's own SHUTDOWN_DELAY_MS
   * keeps it serving (Connection: close) while nginx's pooled connections move away. With one, the
   * harness's preStop wait does that and the app stops accepting at once, as in the manifests.
   */
  const goApp = (shutdownDelayMs: number): AppUnderTest => ({
    name: 'go-app',
    start: (port, version) =>
      spawn(bin, [], {
        env: {
          PATH: process.env.PATH,
          HOST: '127.0.0.1',
          PORT: String(port),
          APP_VERSION: version,
          SHUTDOWN_DELAY_MS: String(shutdownDelayMs),
          SHUTDOWN_TIMEOUT_MS: '10000',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    readyPath: '/healthz',
    // Half of the workers keep 0.5–1 s requests in flight at all times; the others send quick ones,
    // paced at ~10 ms so the run stays light on a 2-core machine.
    request: (worker, n) => ({ method: 'GET', path: `/?delay=${worker % 2 ? 500 + ((n * 97) % 500) : 10}` }),
    longRequest: (ms) => ({ method: 'GET', path: `/?delay=${ms}` }),
    check: (status, body) =>
      status === 200 && body === 'Hi!\n' ? undefined : `HTTP ${status} ${body.slice(0, 80)}`,
  });

  const opts = {
    concurrency: 8,
    maxRequests: 20_000,
    maxDurationMs: 60_000,
    warmupResponses: 50,
    afterExitResponses: 200,
    startTimeoutMs: 10_000,
    drainTimeoutMs: 15_000,
  };

  test('build the binary', () => {
    execFileSync('go', ['build', '-o', bin, '.'], {
      cwd: join(REPO, 'go-app'),
      env: { ...process.env, GOPROXY: 'off' },
    });
  });

  test('passive (nginx still routes to the old instance): no failed request, in-flight requests complete', async (t) => {
    assertZeroDowntime(await runZeroDowntime(t, goApp(300), { ...opts, mode: 'passive' }));
  });

  test('endpoint removal + preStop, as in Kubernetes: no failed request, in-flight requests complete', async (t) => {
    assertZeroDowntime(
      await runZeroDowntime(t, goApp(0), { ...opts, mode: 'endpoint-removal', preStopMs: 300 }),
    );
  });
});
