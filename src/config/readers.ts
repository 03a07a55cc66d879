import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';

/**
 * The readers every setting is read with, intake's and the pod watcher's alike. A reader never throws on
 * a bad value: it adds one problem that names the variable and says what to set, and returns its
 * default, so that loading goes on and every problem is reported at once (ConfigError).
 */

/** The environment as it is read: `process.env`, or a test's object. */
export type Env = Record<string, string | undefined>;

/** How one setting is read and checked, and how the generated docs describe it. */
export interface Reader<T> {
  /** The value of `name` in `env`; a problem is added to `problems` and the default returned. */
  read(env: Env, name: string, problems: string[]): T;
  /** The default as the docs show it; undefined when there is none. */
  readonly default?: string;
  /** The values it takes, as the docs show them. */
  readonly allowed: string;
}

/** A setting is missing or wrong; `problems` holds one line per problem, each saying what to set. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** `NAME=value is not valid: set …`, the one shape of a bad value. */
export function notValid(name: string, raw: string, what: string): string {
  return `${name}=${JSON.stringify(raw)} is not valid: set ${what}`;
}

/** The value, or undefined when unset or empty (an empty variable means "use the default"). */
function given(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** Reads `NAME`, or the contents of the file named by `NAME_FILE` (mounted secrets). Throws when it cannot. */
function readSecret(env: Env, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) return readFileSync(file, 'utf8').trim();
  return given(env, name);
}

/** The problem of a `NAME_FILE` that cannot be read. */
function unreadable(name: string, err: unknown): string {
  return `${name}_FILE cannot be read (${(err as Error).message}): point it at a readable file`;
}

/** A whole number from `min` to `max`. */
export function int(def: number, min: number, max: number): Reader<number> {
  return {
    default: String(def),
    allowed: `${min}–${max}`,
    read: (env, name, problems) => readInt(env, name, problems, def, min, max),
  };
}

/** A whole number from `min` to `max`, or undefined when unset. */
export function optionalInt(min: number, max: number): Reader<number | undefined> {
  return {
    allowed: `${min}–${max}`,
    read(env, name, problems) {
      if (given(env, name) === undefined) return undefined;
      const before = problems.length;
      const n = readInt(env, name, problems, min, min, max);
      return problems.length === before ? n : undefined;
    },
  };
}

function readInt(env: Env, name: string, problems: string[], def: number, min: number, max: number) {
  return wholeNumber(name, given(env, name), problems, def, min, max);
}

/** `raw` as a whole number from `min` to `max` (`def` when unset), in the words of int(). */
export function wholeNumber(
  name: string,
  raw: string | undefined,
  problems: string[],
  def: number,
  min: number,
  max: number,
): number {
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    problems.push(notValid(name, raw, `a whole number from ${min} to ${max}`));
    return def;
  }
  return n;
}

/** A byte count, plain or with a 1024-based KB/MB/GB/TB suffix (as nats-server's config writes it). */
export function bytes(def: number): Reader<number> {
  return {
    default: String(def),
    allowed: 'bytes, or with a KB/MB/GB/TB suffix (1024-based)',
    read(env, name, problems) {
      const raw = given(env, name)?.trim();
      if (raw === undefined || raw === '') return def;
      const m = /^(\d+)\s*(B|KB|MB|GB|TB|K|M|G|T)?$/i.exec(raw);
      const unit = m?.[2]?.toUpperCase().replace(/B$/, '') ?? '';
      const n = m ? Number(m[1]) * 1024 ** ['', 'K', 'M', 'G', 'T'].indexOf(unit) : Number.NaN;
      if (Number.isSafeInteger(n)) return n;
      problems.push(notValid(name, raw, 'a byte count such as 8589934592 or 8GB'));
      return def;
    },
  };
}

/** One of `values` (two are offered as "A or B", more as "one of A, B, C"). */
export function oneOf<const V extends string>(values: readonly V[], def: V): Reader<V> {
  const what = values.length === 2 ? `${values[0]} or ${values[1]}` : `one of ${values.join(', ')}`;
  return {
    default: def,
    allowed: values.map((v) => `\`${v}\``).join(', '),
    read(env, name, problems) {
      const raw = given(env, name);
      if (raw === undefined) return def;
      if (values.includes(raw as V)) return raw as V;
      problems.push(notValid(name, raw, what));
      return def;
    },
  };
}

/** A pino level. */
export function logLevel(): Reader<string> {
  return oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info');
}

/** `true` or `false`. */
export function bool(def: boolean): Reader<boolean> {
  const r = oneOf(['true', 'false'], def ? 'true' : 'false');
  return { ...r, read: (env, name, problems) => r.read(env, name, problems) === 'true' };
}

/** Any text (`allowed` says what it is for the docs); `def` when unset. */
export function text(def: string, allowed = 'text'): Reader<string> {
  return { default: def, allowed, read: (env, name) => given(env, name) ?? def };
}

/** Any text, or undefined when unset. */
export function optionalText(): Reader<string | undefined> {
  return { allowed: 'text', read: (env, name) => given(env, name) };
}

/** Text that must match `pattern`; `hint` says what to set (e.g. "a lower-case DNS name such as x"). */
export function matching(pattern: RegExp, def: string, hint: string): Reader<string> {
  return {
    ...(def ? { default: def } : {}),
    allowed: hint,
    read(env, name, problems) {
      const raw = given(env, name);
      if (raw === undefined) return def;
      if (pattern.test(raw)) return raw;
      problems.push(notValid(name, raw, hint));
      return def;
    },
  };
}

/** Comma-separated names, spaces and empty items dropped. */
export function list(): Reader<string[]> {
  return {
    allowed: 'comma-separated names',
    read: (env, name) =>
      (env[name] ?? '')
        .split(',')
        .map((f) => f.trim())
        .filter(Boolean),
  };
}

/** A secret: `NAME`, or the contents of the file `NAME_FILE` names; undefined when neither is set. */
export function secret(allowed = 'text'): Reader<string | undefined> {
  return {
    allowed,
    read(env, name, problems) {
      try {
        return readSecret(env, name);
      } catch (err) {
        problems.push(unreadable(name, err));
        return undefined;
      }
    },
  };
}

/**
 * URLs (comma-separated) with one of `protocols`, from `NAME` or `NAME_FILE` (a URL may hold a password).
 * `example` is what the problem suggests, e.g. `postgres://host:port/db`.
 */
export function urls(protocols: string[], example: string): Reader<string | undefined> {
  const raw = secret();
  return {
    allowed: `${protocols.map((p) => `\`${p}//\``).join(', ')} URLs, comma-separated`,
    read(env, name, problems) {
      const v = raw.read(env, name, problems);
      if (v === undefined) return undefined;
      for (const part of v.split(',')) {
        try {
          if (!protocols.includes(new URL(part.trim()).protocol)) throw new Error('protocol');
        } catch {
          problems.push(`${name} is not a valid URL: set it like ${example}`);
          return undefined;
        }
      }
      return v;
    },
  };
}

/** Whether `file` is a regular file this process can read. */
export function readable(file: string): boolean {
  try {
    accessSync(file, constants.R_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The path of a mounted file, checked at start-up rather than at the first connection: one intake reads
 * must be `readable` (a PEM file); one a library opens itself must `exist` (a NATS .creds file).
 * `what` names it in the problem.
 */
export function mountedFile(what: string, check: 'readable' | 'exists'): Reader<string | undefined> {
  return {
    allowed: `path of ${what}`,
    read(env, name, problems) {
      const file = given(env, name);
      if (file === undefined) return undefined;
      if (check === 'readable' && !readable(file))
        problems.push(`${name}=${file} cannot be read: mount ${what} there`);
      if (check === 'exists' && !existsSync(file))
        problems.push(`${name}=${file} does not exist: mount ${what} there`);
      return file;
    },
  };
}

/** A reader whose default is computed when the setting is read (an OS user, a file limit). */
export function withDefault<T>(reader: Reader<T | undefined>, def: () => T): Reader<T> {
  return {
    allowed: reader.allowed,
    read: (env, name, problems) => reader.read(env, name, problems) ?? def(),
  };
}
