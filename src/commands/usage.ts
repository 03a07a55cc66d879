// What intake says about its commands: `--help` for intake, a group and a command, and the one line of
// a usage error, with a suggestion when what was typed is close to a name.
import { type CommandGroup, type CommandSpec, EXIT_CODES, HELP_OPTION, type OptionSpec } from './command.ts';

/** `intake <cmd>: <what>` and where to read more. */
export function usageLine(who: string, what: string, help: string): string {
  return `${who}: ${what}\nrun '${help}'`;
}

/** `intake keys create --name NAME --scopes LIST [--senders LIST]`. */
export function synopsis(spec: CommandSpec): string {
  const parts = [`intake ${spec.name}`];
  for (const [name, o] of Object.entries(spec.options)) {
    const flag = o.type === 'string' ? `--${name} ${o.value ?? 'VALUE'}` : `--${name}`;
    parts.push(o.required ? flag : `[${flag}]`);
  }
  for (const p of spec.positionals) {
    const arg = `<${p.name}>${p.variadic ? '…' : ''}`;
    parts.push(p.required ? arg : `[${arg}]`);
  }
  return parts.join(' ');
}

const EXIT_LINE = `exit codes: ${EXIT_CODES.map(([c, what]) => `${c} ${what.split(':')[0]}`).join(', ')}`;

/** `intake <cmd> --help`. */
export function usageOf(spec: CommandSpec): string {
  const lines = [`usage: ${synopsis(spec)}`, '', wrap(spec.summary)];
  if (spec.description) lines.push('', wrap(spec.description));
  if (spec.positionals.length) {
    lines.push('', 'arguments:');
    for (const p of spec.positionals) lines.push(row(`<${p.name}>${p.variadic ? '…' : ''}`, p.description));
  }
  lines.push('', 'flags:');
  for (const [name, o] of Object.entries({ ...spec.options, help: HELP_OPTION }))
    lines.push(row(flagName(name, o), o.description));
  lines.push(
    '',
    spec.needs
      ? 'settings: read from the environment (README.md#configuration); a flag overrides its setting'
      : 'settings: none read; this command touches no database, key or file',
    EXIT_LINE,
  );
  return lines.join('\n');
}

/** `intake --help` (every command in `specs`), or `intake keys --help` for a group. */
export function globalUsage(specs: CommandSpec[], group?: CommandGroup): string {
  const lines = [
    group ? `usage: intake ${group.name} <subcommand> [flags]` : 'usage: intake <command> [flags]',
    '',
    group ? wrap(group.summary) : 'intake: HTTP → durable queue → idempotent batch writer → PostgreSQL.',
    '',
    group ? 'subcommands:' : 'commands (without one, `intake` runs `start`):',
    ...specs.map((s) => row(s.name, s.summary, 22)),
    '',
    `run 'intake ${group ? `${group.name} ` : ''}<${group ? 'subcommand' : 'command'}> --help' for its flags and arguments; all of them: docs/cli.md`,
    ...(group
      ? []
      : [
          'intake --version prints the version',
          'settings are read from the environment: README.md#configuration',
        ]),
    EXIT_LINE,
  ];
  return lines.join('\n');
}

export function flagName(name: string, o: OptionSpec): string {
  const long = o.type === 'string' ? `--${name} ${o.value ?? 'VALUE'}` : `--${name}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

function row(left: string, right: string, width = 22): string {
  const pad = ' '.repeat(width + 2);
  const text = wrap(right, 100 - width - 2)
    .split('\n')
    .join(`\n${pad}`);
  return left.length >= width ? `  ${left}\n${pad}${text}` : `  ${left.padEnd(width)}${text}`;
}

function wrap(text: string, width = 100): string {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out.join('\n');
}

/** ` (did you mean "start"?)` when one name is close to what was typed. */
export function suggest(typed: string, names: string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const n of names) {
    const d = n.startsWith(typed) && typed.length >= 2 ? 1 : distance(typed, n);
    if (d < bestDistance) {
      best = n;
      bestDistance = d;
    }
  }
  return best ? `: did you mean "${best}"?` : '';
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}
