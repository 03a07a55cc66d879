import type { CommandSpec } from './command.ts';
import { allCommands } from './dispatch.ts';

/** The declaration of `intake <name>` (e.g. `api`, `keys rotate`): what loadConfig takes. */
export function commandNamed(name: string): CommandSpec {
  const spec = allCommands().find((s) => s.name === name);
  if (!spec) throw new Error(`no command "intake ${name}"`);
  return spec;
}
