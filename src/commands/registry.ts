import { type CommandGroup, type CommandSpec, isGroup } from './command.ts';
import { deadLetterCommands } from './dead-letters.ts';
import { doctorCommand } from './doctor.ts';
import { keysCommands } from './keys.ts';
import { maintainCommand } from './maintain.ts';
import { migrateCommand } from './migrate.ts';
import { piiCommands } from './pii.ts';
import { resolve } from './resolve.ts';
import { serveCommands } from './serve.ts';
import { smokeCommand } from './smoke.ts';
import { globalUsage, usageOf } from './usage.ts';
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
      console.log(globalUsage(allCommands()));
      return 0;
    }
    const found = resolve(COMMANDS, positionals);
    if (found.kind === 'error') {
      console.error(found.line);
      return 2;
    }
    console.log(
      found.kind === 'group' ? globalUsage(found.group.subcommands, found.group) : usageOf(found.spec),
    );
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
 * Every `intake` command, in the order `intake --help` and docs/cli.md list them. Each declares itself
 * in its own file (command.ts says what a declaration holds); a new command is one entry here.
 */
export const COMMANDS: Array<CommandSpec | CommandGroup> = [
  ...serveCommands,
  migrateCommand,
  maintainCommand,
  doctorCommand,
  smokeCommand,
  keysCommands,
  piiCommands,
  deadLetterCommands,
  helpCommand,
  versionCommand,
];

/** Every runnable command, subcommands flattened, in the order of COMMANDS. */
export function allCommands(): CommandSpec[] {
  return COMMANDS.flatMap((e) => (isGroup(e) ? e.subcommands : [e]));
}

/** The declaration of `intake <name>` (e.g. `api`, `keys rotate`): what loadConfig takes. */
export function commandNamed(name: string): CommandSpec {
  const spec = allCommands().find((s) => s.name === name);
  if (!spec) throw new Error(`no command "intake ${name}"`);
  return spec;
}
