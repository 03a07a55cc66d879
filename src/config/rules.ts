import { BlockList, isIP } from 'node:net';
import { join, resolve } from 'node:path';
import type { ConfigNeeds } from './needs.ts';
import { wholeNumber } from './readers.ts';
import type { Config } from './types.ts';

/**
 * What involves more than one setting, in one place: a setting checked against another, a default
 * taken from another, and what production requires of the commands that need it. Each rule adds its
 * problem to the others, in the same words as the readers ("X=… is not valid: set …").
 */

/** The raw values rules judge that the Config does not keep as given. */
export interface Given {
  /** Whether HOST was set at all (authentication off picks loopback only when it was not). */
  host: boolean;
  deadLetterRetentionDays: string | undefined;
  heapSnapshotDir: string | undefined;
}

/** Checks and defaults that involve several settings, once every setting was read. */
export function applyRules(cfg: Config, given: Given, needs: ConfigNeeds, problems: string[]): void {
  if (cfg.adminPort !== undefined && cfg.adminPort === cfg.port)
    problems.push(`INTAKE_ADMIN_PORT=${cfg.adminPort} is PORT too: set another port, or unset it`);
  cfg.deadLetterRetentionDays = deadLetterRetention(
    given.deadLetterRetentionDays,
    cfg.retentionDays,
    problems,
  );
  cfg.heapSnapshot.dir = resolve(given.heapSnapshotDir ?? join(cfg.dataDir, 'heapsnapshots'));
  cfg.smoke.url ||= `http://127.0.0.1:${cfg.port}`;
  // Only where a worker runs: an API pod may keep a smaller pool.
  if (needs.worker && cfg.workerConcurrency >= cfg.dbPoolSize)
    problems.push(
      `INTAKE_WORKER_CONCURRENCY=${cfg.workerConcurrency} is not valid with INTAKE_DB_POOL_SIZE=${cfg.dbPoolSize}: ` +
        'each batch in flight holds a connection, so set it below the pool size (or raise the pool)',
    );
  // In production no keys is refused already (requireApiKeys).
  if (needs.apiKeys === 'required' && cfg.apiKeys.length === 0 && !cfg.production)
    authOffListensOnLoopback(cfg, given, problems);
  if (needs.database && cfg.production && !cfg.databaseUrl)
    problems.push(
      'DATABASE_URL is required when NODE_ENV=production: set it to postgres://user:pass@host:5432/db',
    );
}

/**
 * Dead letters are kept at most as long as messages, and as long by default: past the message retention
 * they could no longer be stored (their partition is gone) nor their IP read (their data key is destroyed).
 */
function deadLetterRetention(given: string | undefined, retentionDays: number, problems: string[]): number {
  return wholeNumber('INTAKE_DEAD_LETTER_RETENTION_DAYS', given, problems, retentionDays, 1, retentionDays);
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether `host` is a loopback address (a name other than localhost may resolve to anything). */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Authentication is off (a command serving clients with no keys, outside production): listen on
 * loopback unless the operator opted in to more, so that nobody on the network can read, export and
 * erase (docs/contract.md §6).
 */
function authOffListensOnLoopback(cfg: Config, given: Given, problems: string[]): void {
  if (!given.host) {
    cfg.host = '127.0.0.1';
    return;
  }
  if (isLoopback(cfg.host) || cfg.allowNoAuthRemote) return;
  problems.push(
    `HOST=${cfg.host} with no INTAKE_API_KEYS would let anyone who reaches it ingest, read, export and erase: ` +
      'create keys with `intake keys create`, listen on 127.0.0.1, or set INTAKE_ALLOW_NO_AUTH_REMOTE=true ' +
      'to serve without authentication there on purpose',
  );
}

/** A command that authenticates clients runs in production only with keys. */
export function requireApiKeys(cfg: Config, problems: string[]): void {
  if (cfg.production && cfg.apiKeys.length === 0)
    problems.push(
      `INTAKE_API_KEYS (or INTAKE_API_KEYS_FILE) is required when NODE_ENV=production (\`${`intake ${cfg.command}`.trimEnd()}\` authenticates clients): create keys with \`intake keys create\``,
    );
}

/**
 * A command that protects or reveals personal data runs in production only with an explicit master key
 * (unless reading the one given is the problem already).
 */
export function requirePiiMasterKey(cfg: Config, keyProblems: string[]): void {
  if (cfg.production && cfg.piiMasterKey === undefined && keyProblems.length === 0)
    keyProblems.push(
      'INTAKE_PII_MASTER_KEY (or INTAKE_PII_MASTER_KEY_FILE) is required when NODE_ENV=production',
    );
}

/** The default bucket per key: none at rate 0; a burst of twice the rate unless given. */
export function rateLimit(
  perSecond: number,
  burst: number | undefined,
): { perSecond: number; burst: number } | undefined {
  return perSecond > 0 ? { perSecond, burst: burst ?? Math.max(1, perSecond * 2) } : undefined;
}

/** One kind of NATS credentials at most, and a user comes with its password. */
export function natsCredentials(auth: Config['nats']['auth'], problems: string[]): void {
  if ((auth.user === undefined) !== (auth.pass === undefined))
    problems.push('NATS_USER and NATS_PASSWORD go together: set both or neither');
  if ([auth.user, auth.token, auth.credsFile].filter((v) => v !== undefined).length > 1)
    problems.push(
      'set only one kind of NATS credentials: NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS_FILE',
    );
}

/** A client certificate comes with its key. */
export function natsClientCertificate(tls: Config['nats']['tls'], problems: string[]): void {
  if ((tls?.certFile === undefined) !== (tls?.keyFile === undefined))
    problems.push('NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together: set both or neither');
}
