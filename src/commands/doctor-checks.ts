import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Config } from '../config.ts';
import { DataKeys } from '../privacy/data-keys.ts';
import { KeyWrapper } from '../privacy/key-wrapper.ts';
import { devKeyFile, findMasterKey } from '../privacy/master-key.ts';
import { keysToRewrap } from '../privacy/master-rotation.ts';
import type { QueueInspection, QueueStoreInspection } from '../queue/queue.ts';
import { newestDataKey } from '../store/data-keys.ts';
import { countDeadLetters } from '../store/dead-letters.ts';
import { expectedVersion, schemaVersion } from '../store/migrate.ts';
import { countPartitionsFromToday } from '../store/partitions.ts';
import { serverVersion } from '../store/server-version.ts';
import { databaseTls } from '../store/tls.ts';

/**
 * `intake doctor`: the pre-deployment checks (docs/deployment.md). Each check answers ok, warn or fail
 * with one line an operator can act on; any fail makes the command exit non-zero. Read-only: it never
 * migrates, creates or fixes anything.
 */
export interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
}

export async function runDoctor(config: Config, databaseUrl: string): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (name: string, status: Check['status'], detail: string) =>
    checks.push({ name, status, detail });

  add(
    'config',
    'ok',
    `valid (${config.production ? 'production' : 'development'}; queue ${config.natsUrl ? 'nats' : 'postgres'})`,
  );
  checks.push(secretFiles(config.secretFiles));
  if (config.apiKeys.length === 0) {
    add('api keys', config.production ? 'fail' : 'warn', 'none configured: authentication is off');
  } else {
    add(
      'api keys',
      'ok',
      `${config.apiKeys.length} configured (${config.apiKeys.map((k) => k.name).join(', ')})`,
    );
  }

  const db = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await db.connect();
    add('database', 'ok', `reachable, PostgreSQL ${await serverVersion(db)}`);
    const tls = await databaseTls(db, databaseUrl);
    add('database tls', tls.verified ? 'ok' : 'warn', tls.detail);
  } catch (err) {
    add('database', 'fail', `cannot connect: ${(err as Error).message}`);
    await db.end().catch(() => {});
    // The Postgres queue lives in that database: only a NATS queue has more to say.
    return config.natsUrl ? checks.concat(await queueChecks(config, databaseUrl)) : checks;
  }
  try {
    const want = await expectedVersion();
    const have = await schemaVersion(db);
    if (have === want) add('migrations', 'ok', `schema at version ${have}`);
    else if (have < want)
      add(
        'migrations',
        'fail',
        `schema at version ${have}, this build needs ${want}: run \`intake migrate\``,
      );
    else
      add(
        'migrations',
        'warn',
        `schema at version ${have}, newer than this build (${want}): fine during a rollout, not after`,
      );

    if (have > 0) {
      const ahead = await countPartitionsFromToday(db);
      add(
        'partitions',
        ahead >= 2 ? 'ok' : 'fail',
        `${ahead} daily partitions from today on${ahead < 2 ? ': `intake maintain` (the CronJob) or `intake migrate` creates them' : ''}`,
      );

      const n = await countDeadLetters(db);
      add(
        'dead letters',
        n === 0 ? 'ok' : 'warn',
        n === 0 ? 'none' : `${n} messages in intake.dead_letters: see docs/runbooks.md#dead-letters`,
      );

      try {
        if (config.piiMasterKeyProblem) throw new Error(config.piiMasterKeyProblem);
        // Read-only: a missing development key is reported, not generated (intake start generates it).
        const master = await findMasterKey(config);
        if (!master) throw new NoMasterKey(devKeyFile(config));
        const previous = config.piiPreviousMasterKey;
        const wrapper = new KeyWrapper(master, previous ? [previous] : []);
        const keys = new DataKeys(db, wrapper);
        const newest = await newestDataKey(db);
        const left = previous ? await keysToRewrap(db, wrapper) : [];
        if (left.length) {
          add(
            'pii keys',
            'warn',
            `a master key rotation is under way: ${left.length} stored keys still wrapped under the previous ` +
              'master key; run `intake keys rotate-master` (docs/runbooks.md)',
          );
        } else if (newest) {
          await keys.get(newest.id);
          add('pii keys', 'ok', `master key opens the current data key ${newest.id}`);
        } else {
          add('pii keys', 'ok', 'master key present; no data key yet (created by the API on start)');
        }
      } catch (err) {
        if (err instanceof NoMasterKey)
          add(
            'pii keys',
            'warn',
            `no INTAKE_PII_MASTER_KEY and no development key yet (${err.file}): intake start generates one`,
          );
        else add('pii keys', 'fail', (err as Error).message);
      }
    }
  } finally {
    await db.end();
  }
  return checks.concat(await queueChecks(config, databaseUrl));
}

/**
 * What the queue says of itself (the reading OpenedQueue.inspect gives, over a connection of doctor's
 * own that creates, fixes and writes nothing): on NATS the server, the stream's settings, usage and
 * replicas, and the writer consumer; on the Postgres queue the table against its limit (its server is
 * the database, checked above).
 */
async function queueChecks(config: Config, databaseUrl: string): Promise<Check[]> {
  const { inspectQueue } = await import('../queue/open-queue.ts');
  let q: QueueInspection;
  try {
    q = await inspectQueue(config, databaseUrl, 'intake-doctor');
  } catch (err) {
    return [{ name: 'queue', status: 'fail', detail: `cannot read the queue: ${(err as Error).message}` }];
  }
  return q.kind === 'nats' ? natsChecks(config, q) : tableChecks(q);
}

function natsChecks(config: Config, q: QueueInspection): Check[] {
  if (!q.server.reachable)
    return [
      { name: 'nats', status: 'fail', detail: `cannot connect to ${config.natsUrl}: ${q.server.error}` },
    ];
  const tls = q.server.tlsVerified ? ', TLS, server certificate verified against NATS_TLS_CA_FILE' : '';
  const out: Check[] = [{ name: 'nats', status: 'ok', detail: `reachable (${q.server.address}${tls})` }];
  const s = q.store;
  if (!s) {
    out.push({
      name: 'stream',
      status: 'warn',
      detail: `${config.nats.stream} does not exist yet (created by "intake migrate", or by the first api/worker start where its NATS user may)`,
    });
    return out;
  }
  const drift = s.drift.map((d) => `${d.setting}: want ${d.want}, have ${d.have}`);
  out.push({
    name: 'stream',
    status: drift.length ? 'warn' : 'ok',
    detail: drift.length
      ? `${s.name} differs (fixed at start where safe): ${drift.join('; ')}`
      : `${s.name} matches the configuration`,
  });
  out.push(streamUsageCheck(s, config));
  if (s.replicas) {
    const { peers, configured, lagging } = s.replicas;
    out.push({
      name: 'stream replicas',
      status: lagging.length ? 'fail' : 'ok',
      detail: `${peers} of ${configured} peers${lagging.length ? `, lagging/offline: ${lagging.join(', ')}` : ' current'}`,
    });
  }
  if (q.consumer) out.push(consumerCheck(q.consumer));
  return out;
}

/**
 * How full the message stream is under its own limits: a full stream refuses every publish (503
 * QUEUE_FULL) and what fills it is unprocessed, since workers trim what they acknowledged.
 */
function streamUsageCheck(s: QueueStoreInspection, config: Config): Check {
  const held = `${s.messages} stream messages, ${s.bytes} bytes`;
  if (s.maxBytes <= 0 && s.maxMessages <= 0) {
    return {
      name: 'stream usage',
      status: config.production ? 'warn' : 'ok',
      detail:
        `${held}; no limit of its own (NATS_MAX_BYTES, NATS_MAX_MSGS): only max_age and the server's ` +
        'max_file_store bound it, and a full store refuses every publish until data ages out',
    };
  }
  const limits = [
    s.maxBytes > 0 ? `max_bytes ${s.maxBytes}` : '',
    s.maxMessages > 0 ? `max_msgs ${s.maxMessages}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  const pct = Math.round(s.usage * 100);
  if (!s.hasRoom) {
    return {
      name: 'stream usage',
      status: 'fail',
      detail: `full (${held}; ${limits}): ingest answers 503 QUEUE_FULL; see docs/runbooks.md#queue-stream-near-full`,
    };
  }
  return {
    name: 'stream usage',
    status: pct >= 80 ? 'warn' : 'ok',
    detail: `${pct}% of its limits (${held}; ${limits}); workers trim acknowledged messages from ${s.trimAtPercent}%`,
  };
}

/** The writer consumer: its backlog, or that the worker has nothing to read from yet. */
function consumerCheck(c: NonNullable<QueueInspection['consumer']>): Check {
  if (!c.exists) {
    return {
      name: 'consumer',
      status: 'warn',
      detail: c.error
        ? `${c.name} cannot be read: ${c.error}`
        : `${c.name} does not exist yet (created by "intake migrate", or by the first api/worker start where its NATS user may)`,
    };
  }
  return {
    name: 'consumer',
    status: 'ok',
    detail: `${c.name}: ${c.waiting} stream messages waiting, ${c.unacknowledged} delivered and not yet acknowledged`,
  };
}

/** The Postgres queue table against INTAKE_QUEUE_MAX_MESSAGES, beyond which ingest answers 503. */
function tableChecks(q: QueueInspection): Check[] {
  if (!q.server.reachable) return []; // the database line says so
  const s = q.store;
  if (!s)
    return [
      {
        name: 'queue',
        status: 'warn',
        detail: 'intake.queue does not exist yet (created by "intake migrate")',
      },
    ];
  const held = `${s.messages} messages waiting or leased in ${s.name}`;
  const limit = `INTAKE_QUEUE_MAX_MESSAGES ${s.maxMessages}`;
  if (!s.hasRoom)
    return [
      {
        name: 'queue',
        status: 'fail',
        detail: `full (${held}; ${limit}): ingest answers 503 QUEUE_FULL; see docs/runbooks.md#queue-full`,
      },
    ];
  const pct = Math.round(s.usage * 100);
  return [{ name: 'queue', status: pct >= 80 ? 'warn' : 'ok', detail: `${held}, ${pct}% of ${limit}` }];
}

/**
 * Every Secret file this process is configured to read is mounted and not empty. In Kubernetes each is
 * a key of a Secret the overlay expects (deploy/k8s/overlays/<env>/expected-secrets); a missing one
 * means the Secret or the key was not created, or the volume is not mounted in this pod.
 */
function secretFiles(files: Record<string, string>): Check {
  const mounted: string[] = [];
  const missing: string[] = [];
  for (const [name, file] of Object.entries(files)) {
    try {
      if (readFileSync(file, 'utf8').trim() === '') missing.push(`${name}=${file} is empty`);
      else mounted.push(name);
    } catch (err) {
      missing.push(`${name}=${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (missing.length)
    return {
      name: 'secrets',
      status: 'fail',
      detail: `${missing.join('; ')}: create and mount the Secret (docs/deployment.md#secrets)`,
    };
  return {
    name: 'secrets',
    status: 'ok',
    detail: mounted.length ? `mounted: ${mounted.join(', ')}` : 'none read from files',
  };
}

export function formatChecks(checks: Check[]): string {
  const mark = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;
  return checks.map((c) => `${mark[c.status]}  ${c.name.padEnd(16)} ${c.detail}`).join('\n');
}

class NoMasterKey extends Error {
  constructor(readonly file: string) {
    super('no master key');
  }
}
