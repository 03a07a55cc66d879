import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { needTool, REPO } from './tools.ts';
import { type AppUnderTest, assertZeroDowntime, runZeroDowntime } from './zero-downtime.ts';

const skip = needTool('go', ['version']) ?? needTool('nginx', ['-v']);

describe('go-app: zero downtime behind nginx while the old instance is replaced', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'zd-go-app-'));
  const bin = join(dir, 'go-app');

  const goApp: AppUnderTest = {
    name: 'go-app',
    start: (port, version) =>
      spawn(bin, [], {
        env: {
          PATH: process.env.PATH,
          HOST: '127.0.0.1',
          PORT: String(port),
          APP_VERSION: version,
          // Stands in for the preStop sleep: keep serving (Connection: close) while nginx moves away.
          SHUTDOWN_DELAY_MS: '1000',
          SHUTDOWN_TIMEOUT_MS: '10000',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    readyPath: '/healthz',
    // Half of the workers keep 0.5–1 s requests in flight at all times; the others send quick ones.
    request: (worker, n) => ({ method: 'GET', path: worker % 2 ? `/?delay=${500 + ((n * 97) % 500)}` : '/' }),
    check: (status, body) => (status === 200 && body === 'Hi!\n' ? undefined : `HTTP ${status} ${body.slice(0, 80)}`),
  };

  const opts = {
    concurrency: 8,
    maxRequests: 20_000,
    maxDurationMs: 60_000,
    warmupResponses: 100,
    afterExitResponses: 200,
    startTimeoutMs: 10_000,
    drainTimeoutMs: 15_000,
  };

  test('build the binary', (t) => {
    t.after(() => {});
    execFileSync('go', ['build', '-o', bin, '.'], { cwd: join(REPO, 'go-app'), env: { ...process.env, GOFLAGS: '-mod=mod', GOPROXY: 'off' } });
  });

  for (const mode of ['passive', 'endpoint-removal'] as const) {
    test(`${mode}: no failed request, every in-flight request completes`, async (t) => {
      assertZeroDowntime(await runZeroDowntime(t, goApp, { ...opts, mode }));
    });
  }

  test('clean up', () => rmSync(dir, { recursive: true, force: true }));
});
