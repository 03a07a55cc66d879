import cluster from 'node:cluster';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import { generateKey, SCOPES, type Scope } from './auth/api-keys.ts';
import { type Command, ConfigError, loadConfig } from './config.ts';
import { operatorCommand } from './operator.ts';
import { followPrimarySignals, runApiCluster } from './ops/api-cluster.ts';
import { formatChecks, runDoctor } from './ops/doctor.ts';
import { createLogger } from './ops/logger.ts';
import { ExitCode, exitProcess, handleSignals } from './ops/process-exit.ts';
import { runSmoke } from './ops/smoke.ts';
import { type Role, startIntake } from './runtime.ts';
import { resolveDatabase } from './store/connect.ts';
import { migrate } from './store/migrate.ts';

const USAGE = `usage: intake <command>

commands:
  start     API and worker in one process (default; embedded PostgreSQL when DATABASE_URL is unset)
  api       HTTP API only
  worker    queue → PostgreSQL writer only (serves /livez, /readyz, /metrics)
  migrate   apply database migrations and exit
  keys create --name NAME --scopes ingest,read[,privacy] [--senders a,b]
            print a new API key (shown once) and the INTAKE_API_KEYS entry that admits it
  keys rotate
            start a new PII data key now (new data is encrypted under it)
  doctor    pre-deploy checks: config, database, migrations, partitions, keys, NATS stream
  smoke [--url URL] [--key KEY] [--timeout-ms N]
            post-deploy: send a canary message and prove it is stored end to end
  pii reveal <message-id> | export <ip> | erase <ip>
            GDPR operations as an operator; every one is written to the audit log
  help      this text

configuration is read from the environment: see README.md#configuration`;

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'start';
  if (command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return 0;
  }
  if (command === 'keys' && argv[1] === 'create') return keysCommand(argv.slice(1));
  const roles: Record<string, Role[]> = { start: ['api', 'worker'], api: ['api'], worker: ['worker'] };
  if (command === 'smoke') return smokeCommand(argv.slice(1));
  if (!(command in roles) && !['migrate', 'pii', 'keys', 'doctor'].includes(command)) {
    console.error(`intake: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }

  const config = loadConfig(process.env, command as Command);
  const log = createLogger({ level: config.logLevel });

  if (command === 'migrate') {
    const db = await resolveDatabase(config, log);
    try {
      await migrate(db.url, log);
    } finally {
      await db.close();
    }
    return 0;
  }
  if (command === 'pii' || command === 'keys') return operatorCommand(config, log, argv);
  if (command === 'doctor') {
    const db = await resolveDatabase(config, log);
    try {
      const checks = await runDoctor(config, db.url, log);
      console.log(formatChecks(checks));
      return checks.some((c) => c.status === 'fail') ? 1 : 0;
    } finally {
      await db.close();
    }
  }

  if (command === 'api' && config.apiWorkers > 1 && cluster.isPrimary) {
    return runApiCluster(config.apiWorkers, log);
  }
  const running = await startIntake(config, roles[command]!, log);
  handleSignals({ name: 'intake', log, shutdown: running.shutdownSteps });
  followPrimarySignals();
  const snapshotSignal = (process.env.INTAKE_HEAPSNAPSHOT_SIGNAL || 'SIGUSR2') as NodeJS.Signals;
  process.on(snapshotSignal, () => {
    const dir = process.env.INTAKE_HEAPSNAPSHOT_DIR || join(config.dataDir, 'heapsnapshots');
    mkdirSync(dir, { recursive: true });
    const file = writeHeapSnapshot(join(dir, `intake-${process.pid}-${Date.now()}.heapsnapshot`));
    log.warn({ file }, 'heap snapshot written');
  });
  return -1; // keep running
}

async function smokeCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { url: { type: 'string' }, key: { type: 'string' }, 'timeout-ms': { type: 'string' } },
  });
  const url = values.url ?? process.env.INTAKE_SMOKE_URL ?? `http://127.0.0.1:${process.env.PORT || 8080}`;
  const key = values.key ?? process.env.INTAKE_SMOKE_KEY;
  const r = await runSmoke({
    url,
    ...(key ? { key } : {}),
    timeoutMs: Number(values['timeout-ms'] ?? 30_000),
  });
  console.log(JSON.stringify({ url, ...r }));
  return r.ok ? 0 : 1;
}

function keysCommand(argv: string[]): number {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, scopes: { type: 'string' }, senders: { type: 'string' } },
  });
  if (positionals[0] !== 'create' || !values.name || !values.scopes) {
    console.error('usage: intake keys create --name NAME --scopes ingest,read[,privacy] [--senders a,b]');
    return 2;
  }
  const scopes = values.scopes.split(',') as Scope[];
  if (!scopes.every((s) => SCOPES.includes(s))) {
    console.error(`intake: --scopes takes ${SCOPES.join(', ')}`);
    return 2;
  }
  const { key, entry } = generateKey(values.name, scopes, values.senders?.split(','));
  console.log(`key (give it to the client; it is not stored anywhere):\n  ${key}\n`);
  console.log(`add this entry to the INTAKE_API_KEYS array:\n  ${JSON.stringify(entry)}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) void exitProcess(code, { name: 'intake' });
  },
  (err: Error) => {
    if (err instanceof ConfigError) {
      void exitProcess(ExitCode.config, { name: 'intake', line: `intake: ${err.message}` });
      return;
    }
    const cause = err.cause ? `\n  cause: ${(err.cause as Error).message ?? err.cause}` : '';
    void exitProcess(ExitCode.failure, { name: 'intake', line: `intake: ${err.message}${cause}` });
  },
);
