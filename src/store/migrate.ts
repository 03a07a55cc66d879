import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import Postgrator from 'postgrator';
import type { Logger } from '../ops/logger.ts';
import type { Queryable } from './pool.ts';

const MIGRATIONS = fileURLToPath(new URL('../../sql/migrations/*.do.*.sql', import.meta.url));
const GRANTS = fileURLToPath(new URL('../../sql/grants.sql', import.meta.url));

/** What `intake migrate` sets besides the schema. */
export interface MigrateOptions {
  /**
   * INTAKE_RETENTION_DAYS: written to intake.retention_policy, the window inside which the partition
   * functions refuse to drop anything, whoever calls them. Unset: the policy stays as it is.
   */
  retentionDays?: number;
}

/**
 * Applies the numbered SQL migrations in sql/migrations (postgrator keeps the applied versions and
 * checksums in intake.schema_version), then re-applies sql/grants.sql, so roles created after a
 * migration still get their grants, and sets the retention policy. Many replicas may start at once, so
 * the run holds a session advisory lock: the first applies, the rest wait and then find nothing to do.
 */
export async function migrate(
  connectionString: string,
  log: Logger,
  opts: MigrateOptions = {},
): Promise<{ from: number; to: number }> {
  const client = new pg.Client({ connectionString, application_name: 'intake-migrate' });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', ['intake.migrate']);
    const postgrator = new Postgrator({
      migrationPattern: MIGRATIONS,
      driver: 'pg',
      schemaTable: 'intake.schema_version',
      execQuery: (query) => client.query(query),
    });
    const from = Number(await postgrator.getDatabaseVersion());
    const applied = await postgrator.migrate();
    const to = applied.length ? Number(applied[applied.length - 1]!.version) : from;
    await client.query(await readFile(GRANTS, 'utf8'));
    if (opts.retentionDays !== undefined) {
      const r = await client.query(
        'UPDATE intake.retention_policy SET days = $1, updated_at = now() WHERE days <> $1',
        [opts.retentionDays],
      );
      if (r.rowCount) log.info({ days: opts.retentionDays }, 'retention policy set');
    }
    if (applied.length) log.info({ from, to, applied: applied.map((m) => m.filename) }, 'migrations applied');
    else log.debug({ version: from }, 'schema up to date');
    return { from, to };
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', ['intake.migrate']).catch(() => {});
    await client.end();
  }
}

/** Latest migration version shipped with this build (for `doctor`). */
export async function expectedVersion(): Promise<number> {
  const postgrator = new Postgrator({
    migrationPattern: MIGRATIONS,
    driver: 'pg',
    execQuery: async () => ({ rows: [] }),
  });
  const ms = await postgrator.getMigrations();
  return Math.max(0, ...ms.map((m) => Number(m.version)));
}

/**
 * The schema version the database is at (0 when intake was never migrated there). One function for
 * the start-up check (runtime.ts) and `intake doctor`.
 */
export async function schemaVersion(db: Queryable): Promise<number> {
  const r = await db
    .query<{ v: number }>('SELECT coalesce(max(version::int), 0) AS v FROM intake.schema_version')
    .catch((err: { code?: string }) => {
      if (err.code === '42P01') return { rows: [{ v: 0 }] }; // undefined_table: never migrated
      throw err;
    });
  return r.rows[0]!.v;
}

/** Throws, saying what to run, when the database is older than this build. */
export async function assertSchemaCurrent(db: Queryable): Promise<void> {
  const have = await schemaVersion(db);
  const want = await expectedVersion();
  if (have < want) {
    throw new Error(
      `database schema is at version ${have}, this build needs ${want}: run \`intake migrate\` first`,
    );
  }
}
