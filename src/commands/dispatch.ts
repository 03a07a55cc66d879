import { loadConfig } from '../config.ts';
import { ExitCode } from '../ops/process-exit.ts';
import type { CommandSpec } from './command.ts';
import { parse, wantsHelp } from './flags.ts';
import { allCommands, COMMANDS } from './registry.ts';
import { resolve } from './resolve.ts';
import { globalUsage, usageLine, usageOf } from './usage.ts';
import { version } from './version.ts';

/**
 * Runs `intake <argv>`: the exit code, or -1 for a server that keeps running. The one path from argv
 * to a running command: resolve the command (resolve.ts), answer `--help` before anything is read
 * (usage.ts), parse its flags strictly and check every value (flags.ts), and only then load what it
 * declared it needs and run it. A usage problem is one line naming it and what is allowed, plus where
 * to read more, and exit code 2.
 */
export async function dispatch(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const args = argv.length ? argv : ['start'];
  const first = args[0]!;
  if (first === '--help' || first === '-h') return print(globalUsage(allCommands()));
  if (first === '--version' || first === '-V') return print(`intake ${version()}`);
  if (first.startsWith('-'))
    return fail(
      usageLine(
        'intake',
        `unknown flag ${first} before the command (allowed: --help, --version)`,
        'intake --help',
      ),
    );
  const found = resolve(COMMANDS, args);
  if (found.kind === 'error') return fail(found.line);
  if (found.kind === 'group') {
    if (wantsHelp(found.rest)) return print(globalUsage(found.group.subcommands, found.group));
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
