import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import type { ConfigNeeds } from '../config.ts';
import type { Role } from '../runtime.ts';
import { type CommandSpec, checks, type OptionSpec } from './command.ts';

/** `intake start|api|worker`: the long-running processes. Their flags override the settings of the same name. */
const listen: Record<string, OptionSpec> = {
  port: {
    type: 'string',
    value: 'PORT',
    description: 'port to listen on (default: the PORT setting, else 8080)',
    setting: 'PORT',
    check: checks.int(0, 65535),
  },
  host: {
    type: 'string',
    value: 'HOST',
    description:
      'address to listen on (default: the HOST setting, else 0.0.0.0, or 127.0.0.1 for an API without keys)',
    setting: 'HOST',
    check: checks.host,
  },
};

/**
 * The API role authenticates clients and protects personal data: it requires API keys (in production)
 * and the PII master key. The worker role stores batches and moves ciphertext it never reads. Both use
 * the database and the queue.
 */
const API: ConfigNeeds = { apiKeys: 'required', piiKey: 'required', queue: true, database: true };
const WORKER: ConfigNeeds = { worker: true, queue: true, database: true };

function serve(
  name: 'start' | 'api' | 'worker',
  roles: Role[],
  needs: ConfigNeeds,
  summary: string,
  description: string,
): CommandSpec<ConfigNeeds> {
  return {
    name,
    summary,
    description,
    options: listen,
    positionals: [],
    needs,
    service: true,
    async run({ config, log }) {
      // Loaded here, not at the top: `--help` and usage errors load none of the server.
      const { default: cluster } = await import('node:cluster');
      const { followPrimarySignals, runApiCluster } = await import('../ops/api-cluster.ts');
      // INTAKE_API_WORKERS > 1: this process only supervises that many API processes on the port.
      if (name === 'api' && config.apiWorkers > 1 && cluster.isPrimary)
        return runApiCluster(config.apiWorkers, log);
      const { startIntake } = await import('../runtime.ts');
      const { handleSignals } = await import('../ops/process-exit.ts');
      const running = await startIntake(config, roles, log);
      handleSignals({ name: 'intake', log, shutdown: running.shutdownSteps });
      followPrimarySignals();
      process.on(config.heapSnapshot.signal, () => {
        const dir = config.heapSnapshot.dir;
        mkdirSync(dir, { recursive: true });
        const file = writeHeapSnapshot(join(dir, `intake-${process.pid}-${Date.now()}.heapsnapshot`));
        log.warn({ file }, 'heap snapshot written');
      });
      return -1; // keeps running until a signal
    },
  };
}

export const serveCommands: CommandSpec[] = [
  serve(
    'start',
    ['api', 'worker'],
    // The all-in-one command migrates first, as graphile-worker and pg-boss do.
    { ...API, ...WORKER, migrateOnStart: true },
    'API and worker in one process (the default command)',
    'Serves the HTTP API and writes queued messages to PostgreSQL in one process. Without DATABASE_URL it ' +
      'starts an embedded PostgreSQL under INTAKE_DATA_DIR; it applies migrations first unless ' +
      'INTAKE_MIGRATE_ON_START=false. SIGTERM drains and exits 0.',
  ),
  serve(
    'api',
    ['api'],
    API,
    'HTTP API only',
    'Serves the HTTP API (ingest, read, privacy, admin). Refuses a database schema older than this build: ' +
      'run `intake migrate` first.',
  ),
  serve(
    'worker',
    ['worker'],
    WORKER,
    'queue → PostgreSQL writer only (serves /livez, /readyz, /metrics)',
    'Takes messages from the queue and writes them to PostgreSQL in batches. Its HTTP port serves only ' +
      '/livez, /readyz and /metrics.',
  ),
];
