import type { ConfigNeeds } from '../config.ts';
import type { CommandSpec } from './command.ts';

/** `intake doctor`: the pre-deployment checks (doctor-checks.ts). Read-only. */
export const doctorCommand: CommandSpec<ConfigNeeds> = {
  name: 'doctor',
  summary: 'pre-deploy checks: config, database, migrations, partitions, keys, NATS stream',
  description:
    'Checks what this deployment needs and changes nothing: configuration, mounted secrets, API keys, ' +
    'database reachability, schema version, partitions ahead, dead letters, that the PII master key opens ' +
    'the data keys, and the NATS stream. One line per check (ok, WARN, FAIL); exits 1 when any check fails.',
  options: {
    json: {
      type: 'boolean',
      description: 'print {"ok": bool, "checks": [{name, status, detail}]} for scripts instead of text',
    },
  },
  positionals: [],
  // It reports missing or bad keys as failed checks instead of refusing to start.
  needs: { apiKeys: 'read', piiKey: 'read', queue: true, database: true },
  async run({ config, log, values }) {
    const { formatChecks, runDoctor } = await import('./doctor-checks.ts');
    const { resolveDatabase } = await import('../store/connect.ts');
    const db = await resolveDatabase(config, log);
    try {
      const checks = await runDoctor(config, db.url);
      const ok = !checks.some((c) => c.status === 'fail');
      console.log(values.json ? JSON.stringify({ ok, checks }, null, 2) : formatChecks(checks));
      return ok ? 0 : 1;
    } finally {
      await db.close();
    }
  },
};
