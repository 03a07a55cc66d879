import type { ConfigNeeds } from '../config.ts';
import { type CommandSpec, checks } from './command.ts';

/**
 * `intake maintain`: partition upkeep as the migration owner, the only role allowed to run it
 * (migration 010). The Kubernetes CronJob runs it hourly; compose runs it with `--every`.
 */
export const maintainCommand: CommandSpec<ConfigNeeds> = {
  name: 'maintain',
  summary: 'create the coming daily partitions and drop expired ones, as the owner',
  description:
    'Creates the daily partitions of intake.messages up to 7 days ahead and drops those older than ' +
    'INTAKE_RETENTION_DAYS (never inside the window `intake migrate` last recorded), then exits. Only ' +
    'the database owner may run the partition functions: DATABASE_URL must log in as the role that runs ' +
    '`intake migrate` (the Kubernetes CronJob intake-maintain uses the credentials of the migration Job). ' +
    '`intake migrate` does the same once after migrating; a worker logged in as the owner (`intake ' +
    'start`) does it hourly in process. Exits 1 when the role may not run it or the database fails.',
  options: {
    every: {
      type: 'string',
      value: 'S',
      description:
        'repeat every S seconds until SIGTERM or SIGINT instead of exiting (for compose; a failed ' +
        'round is logged and retried next round)',
      check: checks.int(60, 86_400),
    },
  },
  positionals: [],
  needs: { database: true },
  async run({ config, values, log }) {
    const { resolveDatabase } = await import('../store/connect.ts');
    const { createPool } = await import('../store/pool.ts');
    const { canMaintainPartitions, maintainPartitions } = await import('../store/partitions.ts');
    const db = await resolveDatabase(config, log);
    const pool = createPool({
      connectionString: db.url,
      max: 1,
      applicationName: 'intake-maintain',
      onError: (err) => log.warn({ err }, 'idle database connection lost'),
    });
    const round = async () => {
      if (!(await canMaintainPartitions(pool)))
        throw new Error(
          'this database role may not run the partition functions: log in as the owner that runs `intake migrate`',
        );
      const { created, dropped } = await maintainPartitions(pool, config.retentionDays);
      console.log(
        `partitions: ${created} created, ${dropped.length} dropped${dropped.length ? ` (${dropped.join(', ')})` : ''}`,
      );
    };
    try {
      if (values.every === undefined) {
        await round();
        return 0;
      }
      const everyMs = Number(values.every) * 1000;
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      try {
        while (!stop.signal.aborted) {
          await round().catch((err: unknown) =>
            log.error({ err }, 'partition maintenance failed; it runs again next round'),
          );
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, everyMs);
            stop.signal.addEventListener('abort', () => {
              clearTimeout(t);
              resolve();
            });
          });
        }
        return 0;
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
    } finally {
      await pool.end();
      await db.close();
    }
  },
};
