import { EXIT_CODES, HELP_OPTION } from './command.ts';
import { allCommands } from './registry.ts';
import { flagName, synopsis } from './usage.ts';

/** docs/cli.md, generated from the declarations (scripts/gen-cli-docs.ts; a test fails when it drifts). */
export function renderCliDocs(): string {
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
    'A server (`start`, `api`, `worker`) stopped by SIGTERM exits 0 once drained, 70 when the drain passed INTAKE_SHUTDOWN_TIMEOUT_MS, 128 + the signal number after a second signal.',
    '',
    'A server that cannot start (its port taken, the database unreachable) stops what it had started, in reverse order (an embedded PostgreSQL last), and exits 1 with one line on stderr, written last, naming the stage: `intake: could not start (HTTP server): listen EADDRINUSE: address already in use 0.0.0.0:8080`.',
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
        ? `Settings: those \`intake ${s.name}\` needs (src/config/needs.ts).`
        : 'Settings: none; reads no database, key or file.',
    );
  }
  return `${out.join('\n')}\n`;
}

function anchor(name: string): string {
  return `intake-${name.replace(/ /g, '-')}`;
}
