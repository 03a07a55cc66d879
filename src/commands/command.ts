import { isIP } from 'node:net';
import type { Config, ConfigNeeds } from '../config.ts';
import { isMessageId } from '../contract/message-id.ts';
import type { Logger } from '../ops/logger.ts';

/**
 * What an `intake` command declares about itself, in one place: its flags, its positional arguments and
 * how each value is checked. The dispatcher (src/cli.ts, through ./dispatch.ts) parses with Node's
 * `util.parseArgs` in strict mode and refuses anything the declaration does not allow before any
 * configuration is loaded; `--help` and docs/cli.md are printed from the same declaration.
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder for the value in usage lines (string options), e.g. `N`, `URL`. */
  value?: string;
  description: string;
  /** A string option the command cannot run without. */
  required?: boolean;
  /** The setting (environment variable) this flag overrides; the environment stays its default. */
  setting?: string;
  /** The problem with a value, in intake's words, or undefined when it is fine. */
  check?: (value: string) => string | undefined;
}

export interface PositionalSpec {
  name: string;
  description: string;
  required: boolean;
  /** Takes one or more values (the last positional only). */
  variadic?: boolean;
  check?: (value: string) => string | undefined;
}

export type Values = Record<string, string | boolean | undefined>;

/**
 * What a command runs with. `Needs` is what it declared: a command that declares `needs` gets the
 * `Config` they loaded; one that declares none gets no configuration at all.
 */
export interface RunContext<Needs extends ConfigNeeds | undefined = ConfigNeeds | undefined> {
  values: Values;
  positionals: string[];
  config: Needs extends ConfigNeeds ? Config : undefined;
  log: Logger;
}

/** Everything a command declares but what it reads and how it runs. */
interface CommandInfo {
  /** As typed after `intake`: `doctor`, `keys rotate`. */
  name: string;
  /** One line, for the command list. */
  summary: string;
  /** More about what it does, for `--help` and docs/cli.md. */
  description?: string;
  options: Record<string, OptionSpec>;
  positionals: PositionalSpec[];
  /** A long-running process (`start`, `api`, `worker`): it logs to stdout, where a one-shot command prints its result. */
  service?: boolean;
  /** Checks that involve several values (e.g. ids or --all); the problem or undefined. */
  validate?: (values: Values, positionals: string[]) => string | undefined;
}

/**
 * An `intake` command. `CommandSpec<ConfigNeeds>` declares `needs`, what it reads from the environment
 * beyond the common settings (src/config/needs.ts), and its `run` gets the loaded `Config`;
 * `CommandSpec<undefined>` reads no setting at all. Plain `CommandSpec` is either, for the registry.
 */
export type CommandSpec<Needs extends ConfigNeeds | undefined = ConfigNeeds | undefined> = CommandInfo &
  (Needs extends ConfigNeeds
    ? { needs: Needs; run(ctx: RunContext<Needs>): Promise<number> }
    : { needs?: undefined; run(ctx: RunContext<undefined>): Promise<number> });

/** A command with subcommands: `keys`, `pii`, `dead-letters`. */
export interface CommandGroup {
  name: string;
  summary: string;
  subcommands: CommandSpec[];
}

/** Whether an entry of the registry is a group of subcommands. */
export const isGroup = (e: CommandSpec | CommandGroup): e is CommandGroup => 'subcommands' in e;

/** Exit codes, the same for every command (src/ops/process-exit.ts ExitCode). */
export const EXIT_CODES: Array<[number, string]> = [
  [0, 'ok'],
  [1, 'a check or the operation failed'],
  [2, 'usage: unknown command or flag, missing or extra argument, bad value'],
  [78, 'configuration: a setting in the environment is invalid or missing'],
];

/** Shared value checkers, so every command words the same problem the same way. */
export const checks = {
  int(min: number, max: number) {
    return (v: string) =>
      /^\d+$/.test(v) && Number(v) >= min && Number(v) <= max
        ? undefined
        : `not a whole number from ${min} to ${max}: ${v}`;
  },
  messageId(v: string): string | undefined {
    if (isMessageId(v)) return undefined;
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v))
      return `not a message id: ${v} (expected a UUID of version 7, as intake assigns)`;
    return `not a message id: ${v} (expected a UUID)`;
  },
  ipv4(v: string): string | undefined {
    if (isIP(v) === 4 && !/(^|\.)0\d/.test(v)) return undefined;
    if (isIP(v) === 6) return `not an IPv4 address: ${v} (intake stores only dotted-decimal IPv4)`;
    return `not an IP address: ${v} (expected dotted-decimal IPv4, e.g. 203.0.113.7)`;
  },
  url(v: string): string | undefined {
    try {
      const u = new URL(v);
      if (u.protocol === 'http:' || u.protocol === 'https:') return undefined;
    } catch {}
    return `not an http(s) URL: ${v} (e.g. http://127.0.0.1:8080)`;
  },
  host(v: string): string | undefined {
    return isIP(v) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(v)
      ? undefined
      : `not an address to listen on: ${v} (e.g. 0.0.0.0, ::, 127.0.0.1)`;
  },
};

/** The option every command has. */
export const HELP_OPTION: OptionSpec = {
  type: 'boolean',
  short: 'h',
  description: 'print this help and exit',
};
