import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, quietLog, type TestDatabase } from '../../harness/db.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { loadConfig } from '../../src/config.ts';
import type { Logger } from '../../src/ops/logger.ts';
import { type Role, type Running, startIntake } from '../../src/runtime.ts';

export interface TestApp {
  running: Running;
  db: TestDatabase;
  url: string;
  /** The app's INTAKE_DATA_DIR (removed by close()). */
  dataDir: string;
  /** POST JSON (or a raw string body) to a path. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/**
 * intake in this process on a fresh database, listening on a free loopback port (real HTTP), with
 * the Postgres queue unless `env` says otherwise.
 */
export async function startTestApp(
  label: string,
  opts: {
    roles?: Role[];
    env?: Record<string, string>;
    /** The URL intake connects to, from the test database's (e.g. through a fault-injecting proxy). */
    databaseUrl?: (url: string) => Promise<string>;
    /** The app's logger (default: silent). */
    log?: Logger;
  } = {},
): Promise<TestApp> {
  const db = await createTestDatabase(label);
  const databaseUrl = opts.databaseUrl ? await opts.databaseUrl(db.url) : db.url;
  const dataDir = mkdtempSync(join(tmpdir(), `intake-${label}-`));
  const roles = opts.roles ?? ['api', 'worker'];
  // The command whose settings these roles get: `start` for both (it migrates), else `api`/`worker`.
  const command = roles.length === 1 ? roles[0]! : 'start';
  const config = loadConfig(
    {
      DATABASE_URL: databaseUrl,
      HOST: '127.0.0.1',
      PORT: '0',
      INTAKE_DATA_DIR: dataDir,
      INTAKE_SHUTDOWN_TIMEOUT_MS: '5000',
      ...opts.env,
    },
    commandNamed(command),
  );
  const running = await startIntake(config, roles, opts.log ?? quietLog);
  const url = running.url;
  return {
    running,
    db,
    url,
    dataDir,
    post: (path, body, headers = {}) =>
      fetch(url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    async close() {
      await running.shutdown('test done');
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
