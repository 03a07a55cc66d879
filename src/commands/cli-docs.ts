import type { ConfigNeeds } from '../config.ts';
import { type CommandSpec, EXIT_CODES, HELP_OPTION } from './command.ts';
import { allCommands } from './registry.ts';
import { flagName, synopsis } from './usage.ts';

/** docs/cli.md, generated from the declarations (scripts/gen-cli-docs.ts; a test fails when it drifts). */
export function renderCliDocs(): string {
  const services = allCommands().filter((s) => s.service);
  const out = [
    '# The intake command line',
    '',
    '<!-- Generated from src/commands/ by `node --import tsx scripts/gen-cli-docs.ts`: do not edit by hand. -->',
    '',
    '`intake <command> [flags]`; without a command, `intake` runs `start`. Every command explains itself ' +
      'with `--help` (also `-h`, `intake help <command>`), which reads no setting and touches no database, ' +
      'key or file. `intake --version` (`-V`) prints the version. Flags are checked before anything starts: ' +
      'an unknown flag, a missing or extra argument or a bad value exits 2 with one line naming it. Settings ' +
      'are read from the environment ([README.md](../README.md#configuration)); a flag that mirrors a ' +
      'setting overrides it for that run, and the setting stays its default.',
    '',
    '## Exit codes',
    '',
    'The same for every command:',
    '',
    '| code | meaning |',
    '|---|---|',
    ...EXIT_CODES.map(([c, what]) => `| ${c} | ${what} |`),
    '',
    `A server (${services.map((s) => `\`${s.name}\``).join(', ')}) stopped by SIGTERM exits 0 once drained, 70 when the drain passed INTAKE_SHUTDOWN_TIMEOUT_MS, 128 + the signal number after a second signal.`,
    '',
    'A server that cannot start (its port taken, the database unreachable) stops what it had started, in reverse order (an embedded PostgreSQL last), and exits 1 with one line on stderr, written last, naming the stage: `intake: could not start (HTTP server): listen EADDRINUSE: address already in use 0.0.0.0:8080`.',
    '',
    ...whatEachCommandReads(allCommands()),
    '',
    '## Commands',
    '',
    '| command | what |',
    '|---|---|',
    ...allCommands().map((s) => `| [\`intake ${s.name}\`](#${anchor(s.name)}) | ${s.summary} |`),
  ];
  for (const s of allCommands()) {
    out.push(
      '',
      `### intake ${s.name}`,
      '',
      '```',
      synopsis(s),
      '```',
      '',
      `${s.summary[0]!.toUpperCase()}${s.summary.slice(1)}.`,
    );
    if (s.description) out.push('', s.description);
    if (s.positionals.length) {
      out.push('', '| argument | |', '|---|---|');
      for (const p of s.positionals)
        out.push(
          `| \`<${p.name}>${p.variadic ? '…' : ''}\` | ${p.description}${p.required ? '' : ' (optional)'} |`,
        );
    }
    out.push('', '| flag | |', '|---|---|');
    for (const [name, o] of Object.entries({ ...s.options, help: HELP_OPTION }))
      out.push(
        `| \`${flagName(name, o)}\` | ${o.description}${o.required ? ' (required)' : ''}${o.setting ? `; overrides \`${o.setting}\`` : ''} |`,
      );
    out.push(
      '',
      s.needs
        ? `Settings: ${readsLine(s.needs)} ([what each command reads](#what-each-command-reads)).`
        : 'Settings: none; reads no database, key or file.',
    );
  }
  return `${out.join('\n')}\n`;
}

function anchor(name: string): string {
  return `intake-${name.replace(/ /g, '-')}`;
}

/** What each command declares it reads (its `needs`), as a table: true by construction. */
function whatEachCommandReads(commands: CommandSpec[]): string[] {
  const mark = (v: boolean | string | undefined) => (v === true ? 'yes' : v && v !== 'unused' ? v : '—');
  const reading = commands.filter((s) => s.needs);
  const none = commands.filter((s) => !s.needs).map((s) => `\`intake ${s.name}\``);
  return [
    '## What each command reads',
    '',
    'Every command that reads settings reads the common ones ([README.md](../README.md#configuration)); ' +
      'beyond those, each reads only what it declares (its `needs`, next to its flags in src/commands/), ' +
      'so a process is never refused for a setting it does not use. A setting it does not read is ignored ' +
      'even when set (the Kubernetes ConfigMap names every file; only the pods that read a file mount it).',
    '',
    '| command | database | queue | API keys | PII master key | runs a worker |',
    '|---|---|---|---|---|---|',
    ...reading.map((s) => {
      const n = s.needs!;
      return `| \`intake ${s.name}\` | ${mark(n.database)} | ${mark(n.queue)} | ${mark(n.apiKeys)} | ${mark(n.piiKey)} | ${mark(n.worker)} |`;
    }),
    '',
    '- database: `DATABASE_URL` is mandatory in production (else an embedded PostgreSQL is used);',
    '- queue: `NATS_URL`, its credentials and TLS files are read (unset: the Postgres-backed queue);',
    '- `required`: read and checked before anything starts, and mandatory in production; `read`: read ' +
      'and checked, and `intake doctor` reports a missing or bad one as a failed check instead of refusing to run;',
    '- runs a worker: `INTAKE_WORKER_CONCURRENCY` must stay below `INTAKE_DB_POOL_SIZE`.',
    '',
    `${none.join(', ')} read no setting at all.`,
  ];
}

/** "the database, the queue and the PII master key (required)", from a declaration. */
function readsLine(n: ConfigNeeds): string {
  const parts = [
    ...(n.database ? ['the database'] : []),
    ...(n.queue ? ['the queue'] : []),
    ...(n.apiKeys && n.apiKeys !== 'unused' ? [`API keys (${n.apiKeys})`] : []),
    ...(n.piiKey && n.piiKey !== 'unused' ? [`the PII master key (${n.piiKey})`] : []),
  ];
  if (parts.length === 0) return 'the common ones only';
  const list = parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}` : parts[0];
  return `the common ones, ${list}`;
}
