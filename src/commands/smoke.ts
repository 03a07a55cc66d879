import type { ConfigNeeds } from '../config.ts';
import { type CommandSpec, checks } from './command.ts';

/** `intake smoke`: the post-deployment canary (src/ops/smoke.ts). */
export const smokeCommand: CommandSpec<ConfigNeeds> = {
  name: 'smoke',
  summary: 'post-deploy: send a canary message and prove it is stored end to end',
  description:
    'Sends one message (sender `intake-smoke`) through the API with the client library and waits until ' +
    'it can be read back, proving API → queue → worker → PostgreSQL. The key needs the ingest and read ' +
    'scopes. Exits 1 when the canary is refused, not stored in time, or intake cannot be reached.',
  options: {
    url: {
      type: 'string',
      value: 'URL',
      description:
        'base URL of the API (default: the INTAKE_SMOKE_URL setting, else http://127.0.0.1:<PORT>)',
      setting: 'INTAKE_SMOKE_URL',
      check: checks.url,
    },
    key: {
      type: 'string',
      value: 'KEY',
      description:
        'API key to send (default: the INTAKE_SMOKE_KEY setting); prefer the setting, a flag shows in ps',
      setting: 'INTAKE_SMOKE_KEY',
    },
    'timeout-ms': {
      type: 'string',
      value: 'N',
      description: 'how long to wait for the canary to be stored, in milliseconds (default 30000)',
      check: checks.int(100, 3_600_000),
    },
    json: {
      type: 'boolean',
      description: 'print {"ok", "url", "id", "acceptedMs", "storedMs", "error"} for scripts',
    },
  },
  positionals: [],
  needs: {}, // INTAKE_SMOKE_URL and INTAKE_SMOKE_KEY: no database, queue or key
  async run({ config, values }) {
    const { runSmoke } = await import('../ops/smoke.ts');
    const url = config.smoke.url;
    const r = await runSmoke({
      url,
      ...(config.smoke.key ? { key: config.smoke.key } : {}),
      timeoutMs: Number(values['timeout-ms'] ?? 30_000),
    });
    if (values.json) console.log(JSON.stringify({ url, ...r }));
    else if (r.ok)
      console.log(`ok  canary ${r.id} accepted in ${r.acceptedMs} ms, stored in ${r.storedMs} ms (${url})`);
    else console.error(`intake smoke: ${r.error}`);
    return r.ok ? 0 : 1;
  },
};
