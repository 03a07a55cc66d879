import { type CommandGroup, type CommandSpec, isGroup } from './command.ts';
import { suggest, usageLine } from './usage.ts';

/** What the first words of argv name: a command, a group (`intake keys`), or nothing known. */
export type Resolved =
  | { kind: 'command'; spec: CommandSpec; rest: string[] }
  | { kind: 'group'; group: CommandGroup; rest: string[] }
  | { kind: 'error'; line: string };

/** The command `args` names among `commands`, or the usage line that says what is allowed. */
export function resolve(commands: Array<CommandSpec | CommandGroup>, args: string[]): Resolved {
  const [first = '', second] = args;
  const entry = commands.find((e) => e.name === first);
  if (!entry) {
    const names = commands.map((e) => e.name);
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
