/**
 * What a command reads from the environment beyond the settings every command reads. Each command
 * declares its needs next to its flags (src/commands/); the loader reads exactly that, so a process is
 * never refused for a setting it does not use (the Kubernetes migrate Job mounts no API keys; the
 * worker holds no PII key). Anything left out is not needed.
 */
export interface ConfigNeeds {
  /**
   * INTAKE_API_KEYS and the default rate limit: `required` (read, and mandatory in production),
   * `read` (read and checked if its file can be read: `doctor` reports a missing file or an empty key
   * set as failed checks) or `unused` (not read at all, even when INTAKE_API_KEYS_FILE is set).
   * A command that requires keys serves clients: with none outside production, authentication is off
   * and it listens on loopback unless told otherwise (rules.ts).
   */
  apiKeys?: 'required' | 'read' | 'unused';
  /** The NATS URL, credentials and TLS files (else `natsUrl` stays unset: the Postgres queue). */
  queue?: boolean;
  /**
   * The PII master keys: `required` (read and checked before anything starts), `read` (`doctor`
   * reports a missing or bad key as a failed check) or `unused` (the command moves ciphertext without
   * reading it).
   */
  piiKey?: 'required' | 'read' | 'unused';
  /** PostgreSQL: `DATABASE_URL` is mandatory in production. */
  database?: boolean;
  /** Stores batches in this process: INTAKE_WORKER_CONCURRENCY must stay below INTAKE_DB_POOL_SIZE. */
  worker?: boolean;
  /** INTAKE_MIGRATE_ON_START's default: the all-in-one command migrates, the split roles refuse to. */
  migrateOnStart?: boolean;
}

/** A command as the loader sees its declaration: its name (problems name it) and what it needs. */
export interface ConfigRequest {
  /** As typed after `intake`, e.g. `api`, `keys rotate`; empty for `intake` alone. */
  name: string;
  needs?: ConfigNeeds;
}

/**
 * Everything a command can need: what `loadConfig(env)` reads when no command is named (tests,
 * scripts), as `intake` with no command runs API and worker in one process.
 */
export const EVERY_NEED: Required<ConfigNeeds> = {
  apiKeys: 'required',
  queue: true,
  piiKey: 'required',
  database: true,
  worker: true,
  migrateOnStart: true,
};
