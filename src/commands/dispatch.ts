import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import { ExitCode } from '../ops/process-exit.ts';
import {
  type CommandGroup,
  type CommandSpec,
  EXIT_CODES,
  HELP_OPTION,
  type OptionSpec,
  type Values,
} from './command.ts';
import { deadLetterCommands } from './dead-letters.ts';
import { doctorCommand } from './doctor.ts';
import { keysCommands } from './keys.ts';
import { migrateCommand } from './migrate.ts';
import { piiCommands } from './pii.ts';
import { serveCommands } from './serve.ts';
import { smokeCommand } from './smoke.ts';
import { version } from './version.ts';

/** `intake help [command]` and `intake version`: print and exit 0, reading nothing else. */
const helpCommand: CommandSpec<undefined> = {
  name: 'help',
  summary: 'print the usage of intake or of one command',
  options: {},
  positionals: [
    { name: 'command', description: 'a command, e.g. `keys rotate`', required: false, variadic: true },
  ],
  async run({ positionals }) {
    if (positionals.length === 0) {
      console.log(globalUsage());
      return 0;
    }
    const found = resolve(positionals);
    if (found.kind === 'error') {
      console.error(found.line);
      return 2;
    }
    console.log(found.kind === 'group' ? globalUsage(found.group) : usageOf(found.spec));
    return 0;
  },
};

const versionCommand: CommandSpec<undefined> = {
  name: 'version',
  summary: 'print the version of intake (also --version, -V)',
  options: {},
  positionals: [],
  async run() {
    console.log(`intake ${version()}`);
    return 0;
  },
};

/**
 * Every `intake` command, and the one path from argv to a running command: resolve the command, answer
 * `--help` (before anything is read), parse its flags strictly and check every value, and only then
 * load the configuration and run it. A usage problem is one line naming it and what is allowed, plus
 * where to read more, and exit code 2.
 */
export const COMMANDS: Array<CommandSpec | CommandGroup> = [
  ...serveCommands,
  migrateCommand,
  doctorCommand,
  smokeCommand,
  keysCommands,
  piiCommands,
  deadLetterCommands,
  helpCommand,
  versionCommand,
];

const isGroup = (e: CommandSpec | CommandGroup): e is CommandGroup => 'subcommands' in e;

/** Every runnable command, subcommands flattened, in the order of COMMANDS. */
export function allCommands(): CommandSpec[] {
  return COMMANDS.flatMap((e) => (isGroup(e) ? e.subcommands : [e]));
}

type Resolved =
  | { kind: 'command'; spec: CommandSpec; rest: string[] }
  | { kind: 'group'; group: CommandGroup; rest: string[] }
  | { kind: 'error'; line: string };

/** The command named by the first words of `args`. */
export function resolve(args: string[]): Resolved {
  const [first = '', second] = args;
  const entry = COMMANDS.find((e) => e.name === first);
  if (!entry) {
    const names = COMMANDS.map((e) => e.name);
    return {
      kind: 'error',
      line: usageLine(
        'intake',
        `unknown command "${first}"${suggest(first, names)} (allowed: ${names.join(', ')})`,
        'intake --help',
      ),
    };
  }
  if (!isGroup(entry)) return { kind: 'command', spec: entry, rest: args.slice(1) };
  if (second === undefined || second.startsWith('-'))
    return { kind: 'group', group: entry, rest: args.slice(1) };
  const sub = entry.subcommands.find((s) => s.name === `${entry.name} ${second}`);
  if (!sub) {
    const names = entry.subcommands.map((s) => s.name.slice(entry.name.length + 1));
    return {
      kind: 'error',
      line: usageLine(
        `intake ${entry.name}`,
        `unknown subcommand "${second}"${suggest(second, names)} (allowed: ${names.join(', ')})`,
        `intake ${entry.name} --help`,
      ),
    };
  }
  return { kind: 'command', spec: sub, rest: args.slice(2) };
}

/** Runs `intake <argv>`: the exit code, or -1 for a server that keeps running. */
export async function dispatch(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const args = argv.length ? argv : ['start'];
  const first = args[0]!;
  if (first === '--help' || first === '-h') return print(globalUsage());
  if (first === '--version' || first === '-V') return print(`intake ${version()}`);
  if (first.startsWith('-'))
    return fail(
      usageLine(
        'intake',
        `unknown flag ${first} before the command (allowed: --help, --version)`,
        'intake --help',
      ),
    );
  const found = resolve(args);
  if (found.kind === 'error') return fail(found.line);
  if (found.kind === 'group') {
    if (wantsHelp(found.rest)) return print(globalUsage(found.group));
    const names = found.group.subcommands.map((s) => s.name.slice(found.group.name.length + 1));
    const what = found.rest.length ? `unknown subcommand "${found.rest[0]}"` : 'missing subcommand';
    return fail(
      usageLine(
        `intake ${found.group.name}`,
        `${what} (allowed: ${names.join(', ')})`,
        `intake ${found.group.name} --help`,
      ),
    );
  }
  const { spec, rest } = found;
  if (wantsHelp(rest)) return print(usageOf(spec));
  const parsed = parse(spec, rest);
  if ('problem' in parsed)
    return fail(usageLine(`intake ${spec.name}`, parsed.problem, `intake ${spec.name} --help`));

  const { values, positionals } = parsed;
  if (spec.needs) {
    // A flag that mirrors a setting overrides it for this run; loadConfig reads only what `needs` says.
    const effective = { ...env };
    for (const [name, opt] of Object.entries(spec.options)) {
      const v = values[name];
      if (opt.setting && typeof v === 'string') {
        effective[opt.setting] = v;
        delete effective[`${opt.setting}_FILE`];
      }
    }
    const config = loadConfig(effective, spec); // ConfigError: exit 78 (src/cli.ts)
    return spec.run({ values, positionals, config, log: await logger(spec, config.logLevel) });
  }
  return spec.run({
    values,
    positionals,
    config: undefined,
    log: await logger(spec, env.LOG_LEVEL || 'info'),
  });
}

/** Services log to stdout; a one-shot command's stdout is its result, so its log lines go to stderr. */
async function logger(spec: CommandSpec, level: string) {
  const { createLogger } = await import('../ops/logger.ts');
  return createLogger({ level, fd: spec.service ? 1 : 2 });
}

function print(text: string): number {
  console.log(text);
  return ExitCode.ok;
}

function fail(line: string): number {
  console.error(line);
  return ExitCode.usage;
}

/** `intake <cmd>: <what>` and where to read more. */
function usageLine(who: string, what: string, help: string): string {
  return `${who}: ${what}\nrun '${help}'`;
}

/** `--help` or `-h` anywhere before `--`: help wins over every other flag. */
function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** Parses and checks `args` against the declaration; the first problem, in one line. */
export function parse(
  spec: CommandSpec,
  args: string[],
): { values: Values; positionals: string[] } | { problem: string } {
  const declared: Record<string, OptionSpec> = { ...spec.options, help: HELP_OPTION };
  const options = Object.fromEntries(
    Object.entries(declared).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}) }]),
  );
  const allowed = Object.keys(declared)
    .map((k) => `--${k}`)
    .join(', ');
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    // Name the flag and what is wrong with it, from the tokens a lenient parse sees.
    const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
    for (const t of tokens) {
      if (t.kind !== 'option') continue;
      const opt = declared[t.name];
      if (!opt) return { problem: `unknown flag ${t.rawName} (allowed: ${allowed})` };
      if (opt.type === 'boolean' && t.value !== undefined) return { problem: `${t.rawName} takes no value` };
      if (opt.type === 'string' && (t.value === undefined || t.value.startsWith('-')))
        return { problem: `${t.rawName} needs a value: ${t.rawName} ${opt.value ?? 'VALUE'}` };
    }
    return { problem: (err as Error).message };
  }
  const { values, positionals } = parsed;
  for (const [name, opt] of Object.entries(spec.options)) {
    const v = values[name];
    if (opt.required && v === undefined) return { problem: `missing --${name} ${opt.value ?? ''}`.trimEnd() };
    const problem = typeof v === 'string' && opt.check?.(v);
    if (problem) return { problem: `--${name}: ${problem}` };
  }
  const decl = spec.positionals;
  const variadic = decl[decl.length - 1]?.variadic === true;
  const min = decl.filter((p) => p.required).length;
  if (positionals.length < min) {
    const missing = decl.filter((p) => p.required)[positionals.length]!;
    return { problem: `missing <${missing.name}> (usage: ${synopsis(spec)})` };
  }
  if (!variadic && positionals.length > decl.length) {
    const takes = decl.length ? decl.map((p) => `<${p.name}>`).join(' ') : 'no arguments';
    return { problem: `unexpected argument "${positionals[decl.length]}" (takes ${takes})` };
  }
  for (const [i, v] of positionals.entries()) {
    const problem = (decl[i] ?? decl[decl.length - 1])?.check?.(v);
    if (problem) return { problem };
  }
  const problem = spec.validate?.(values, positionals);
  if (problem) return { problem };
  return { values, positionals };
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

/** `intake --help`, or `intake keys --help` for a group. */
export function globalUsage(group?: CommandGroup): string {
  const specs = group ? group.subcommands : allCommands();
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

function flagName(name: string, o: OptionSpec): string {
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
function suggest(typed: string, names: string[]): string {
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
