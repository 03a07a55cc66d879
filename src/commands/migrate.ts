import type { ConfigNeeds } from '../config.ts';
import type { CommandSpec } from './command.ts';

/** `intake migrate`: the schema change, as the Kubernetes migration Job runs it. */
export const migrateCommand: CommandSpec<ConfigNeeds> = {
  name: 'migrate',
  summary: 'apply database migrations and exit',
  description:
    'Applies the numbered SQL migrations in sql/migrations and re-applies sql/grants.sql, then runs ' +
    'the partition upkeep of `intake maintain` once, and exits. ' +
    'Safe to run from many replicas at once (an advisory lock serialises them). Without DATABASE_URL it ' +
    'migrates the embedded PostgreSQL under INTAKE_DATA_DIR. With NATS_URL it also creates the NATS ' +
    'stream, the writer consumer and the idempotency bucket, or brings their settings in line.',
  options: {},
  positionals: [],
  needs: { database: true, queue: true }, // it provisions the NATS stream too
  async run({ config, log }) {
    const { resolveDatabase } = await import('../store/connect.ts');
    const { migrate } = await import('../store/migrate.ts');
    const db = await resolveDatabase(config, log);
    try {
      const { from, to } = await migrate(db.url, log, { retentionDays: config.retentionDays });
      console.log(
        from === to ? `schema up to date (version ${to})` : `schema migrated from version ${from} to ${to}`,
      );
      // The owner keeps partitions ahead on every deploy, as `intake maintain` does hourly.
      const { createPool } = await import('../store/pool.ts');
      const { maintainPartitions } = await import('../store/partitions.ts');
      const pool = createPool({
        connectionString: db.url,
        max: 1,
        applicationName: 'intake-migrate',
        onError: (err) => log.warn({ err }, 'idle database connection lost'),
      });
      try {
        const { created, dropped } = await maintainPartitions(pool, config.retentionDays);
        console.log(`partitions: ${created} created, ${dropped.length} dropped`);
      } finally {
        await pool.end();
      }
    } finally {
      await db.close();
    }
    if (config.natsUrl) {
      const { setUpQueue } = await import('../queue/open-queue.ts');
      await setUpQueue(config, log);
      console.log(`NATS stream ${config.nats.stream} and consumer ${config.nats.consumer} ready`);
    }
    return 0;
  },
};
