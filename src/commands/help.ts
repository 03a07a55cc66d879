import { readFileSync } from 'node:fs';
import type { CommandSpec } from './command.ts';
import { globalUsage, resolve, usageOf } from './dispatch.ts';

/** `intake help [command]` and `intake version`: print and exit 0, reading nothing else. */
export const helpCommand: CommandSpec = {
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

export const versionCommand: CommandSpec = {
  name: 'version',
  summary: 'print the version of intake (also --version, -V)',
  options: {},
  positionals: [],
  async run() {
    console.log(`intake ${version()}`);
    return 0;
  },
};

/** package.json's version: two folders up from src/commands/ and from dist/commands/ alike. */
export function version(): string {
  try {
    return (
      JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'unknown';
  }
}
