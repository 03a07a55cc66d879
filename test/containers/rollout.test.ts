import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, type TestContext, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { type NatsServer, startNatsServer } from '../../harness/nats.ts';
import { needTool } from '../deploy/tools.ts';
import { type AppUnderTest, assertZeroDowntime, runZeroDowntime } from '../deploy/zero-downtime.ts';
import { HARDENED, IMAGES, requireImages, testKey, uniqueName } from './docker.ts';

/**
 * A rolling replacement of a container behind a real nginx under load, in Kubernetes' order: the new
 * container is started and becomes ready, the old one is removed from nginx's upstreams, the preStop
 * wait passes, then `docker stop`. No request may fail, and requests in flight on the old container
 * (long ones sent straight to it) must complete. The harness is test/deploy/zero-downtime.ts, the same
 * one the process-level tests use; here each instance is a container of the image this suite built.
 */
requireImages();
const skip = needTool('nginx', ['-v']);

/** Starts containers attached (`docker run` in the foreground), stops them with `docker stop`. */
function containers(t: TestContext, label: string) {
  const names = new Map<ChildProcess, string>();
  t.after(() => {
    for (const name of names.values()) spawnSync('docker', ['rm', '--force', name], { stdio: 'ignore' });
  });
  return {
    run(args: string[]): ChildProcess {
      const name = uniqueName(label);
      const child = spawn(
        'docker',
        ['run', '--rm', '--name', name, '--network', 'host', ...HARDENED, ...args],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      names.set(child, name);
      return child;
    },
    stop(child: ChildProcess) {
      spawn('docker', ['stop', '--time', '40', names.get(child)!], { stdio: 'ignore' });
    },
  };
}

const opts = {
  concurrency: 8,
  maxRequests: 20_000,
  maxDurationMs: 120_000,
  warmupResponses: 100,
  afterExitResponses: 200,
  startTimeoutMs: 60_000,
  drainTimeoutMs: 40_000,
  mode: 'endpoint-removal' as const,
  preStopMs: 500,
};

describe('rolling replacement of a container behind nginx under load', { skip }, () => {
  let db: TestDatabase;
  let nats: NatsServer;
  before(async () => {
    db = await createTestDatabase('ct_rollout');
    nats = await startNatsServer();
  });
  after(async () => {
    await nats.stop();
    await db.drop();
  });

  test('intake api: new ready, old removed from nginx, then docker stop: 0 failed requests', async (t) => {
    const c = containers(t, 'api');
    const { key, keysJson } = testKey();
    const master = randomBytes(32).toString('base64');
    const stream = `CT_${randomBytes(3).toString('hex').toUpperCase()}`;
    const body = '{"ts":"1530228282","sender":"rollout","message":{"a":1}}';
    const headers = { authorization: `Bearer ${key}` };
    const app: AppUnderTest = {
      name: 'intake (container)',
      start: (port) =>
        c.run([
          '--tmpfs',
          '/tmp',
          ...['-e', `DATABASE_URL=${db.url}`, '-e', `NATS_URL=${nats.url}`, '-e', `NATS_STREAM=${stream}`],
          ...['-e', `NATS_SUBJECT=ct.${stream}`, '-e', `PORT=${port}`, '-e', 'HOST=127.0.0.1'],
          ...['-e', `INTAKE_API_KEYS=${keysJson}`, '-e', `INTAKE_PII_MASTER_KEY=${master}`],
          ...['-e', 'INTAKE_SHUTDOWN_DELAY_MS=0', '-e', 'INTAKE_SHUTDOWN_TIMEOUT_MS=25000'],
          IMAGES.intake,
          'api',
        ]),
      terminate: (child) => c.stop(child),
      readyPath: '/readyz',
      request: () => ({ method: 'POST', path: '/v1/messages', body, headers }),
      longRequest: (ms) => ({ method: 'POST', path: '/v1/messages', body, headers, slowBodyMs: ms }),
      check: (status, text) => (status === 202 ? undefined : `HTTP ${status} ${text.slice(0, 120)}`),
      paceMs: 2,
    };
    const report = await runZeroDowntime(t, app, opts);
    console.log(`# rollout figures: ${JSON.stringify({ ...report, failures: report.failures.length })}`);
    assertZeroDowntime(report);
  });

  test('go-app: new ready, old removed from nginx, then docker stop, slow requests in flight: 0 failed', async (t) => {
    const c = containers(t, 'go-app');
    const app: AppUnderTest = {
      name: 'go-app (container)',
      start: (port, version) =>
        c.run([
          ...['-e', `PORT=${port}`, '-e', 'HOST=127.0.0.1', '-e', `APP_VERSION=${version}`],
          ...['-e', 'MAX_DELAY_MS=2000', '-e', 'SHUTDOWN_DELAY_MS=0', '-e', 'SHUTDOWN_TIMEOUT_MS=25000'],
          IMAGES.goApp,
        ]),
      terminate: (child) => c.stop(child),
      readyPath: '/healthz',
      // Half of the workers keep 0.5–1 s requests in flight at all times; the others send quick ones.
      request: (worker, n) => ({
        method: 'GET',
        path: `/?delay=${worker % 2 ? 500 + ((n * 97) % 500) : 10}`,
      }),
      longRequest: (ms) => ({ method: 'GET', path: `/?delay=${ms}` }),
      check: (status, text) =>
        status === 200 && text === 'Hi!\n' ? undefined : `HTTP ${status} ${text.slice(0, 80)}`,
    };
    const report = await runZeroDowntime(t, app, { ...opts, warmupResponses: 50 });
    console.log(`# rollout figures: ${JSON.stringify({ ...report, failures: report.failures.length })}`);
    assertZeroDowntime(report);
  });
});
