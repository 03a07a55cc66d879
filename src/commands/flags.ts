import { parseArgs } from 'node:util';
import { type CommandSpec, HELP_OPTION, type OptionSpec, type Values } from './command.ts';
import { synopsis } from './usage.ts';

/** `--help` or `-h` anywhere before `--`: help wins over every other flag. */
export function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * Parses and checks `args` against the declaration, with Node's `util.parseArgs` in strict mode and
 * before any configuration is loaded; the first problem, in one line.
 */
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
