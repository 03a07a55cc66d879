import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { allCommands } from '../../src/commands/registry.ts';

/**
 * Issue 16: every command, run as an operator would (node bin/intake.js as a subprocess), with --help,
 * an unknown flag, a missing (or extra) argument and a bad value. Help exits 0, the rest exit 2 with one
 * line naming the problem, and none of them touches anything: the fresh database given as DATABASE_URL
 * stays empty (no migration, no data key), and INTAKE_DATA_DIR stays empty (no embedded PostgreSQL, no
 * generated master key).
 */
const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let db: TestDatabase;
let dataDir: string;
let env: NodeJS.ProcessEnv;

function intake(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

/** Runs the cases a few at a time (2 cores, shared). */
async function runAll(cases: Array<{ args: string[] }>): Promise<Result[]> {
  const results: Result[] = new Array(cases.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      while (next < cases.length) {
        const i = next++;
        results[i] = await intake(cases[i]!.args);
      }
    }),
  );
  return results;
}

/** A bad value for each command, and the words that must name it. */
const BAD_VALUE: Record<string, { args: string[]; names: RegExp }> = {
  start: { args: ['--port', 'abc'], names: /--port: not a whole number from 0 to 65535: abc/ },
  api: { args: ['--port', '70000'], names: /--port: not a whole number from 0 to 65535: 70000/ },
  worker: { args: ['--host', 'not a host!'], names: /--host: not an address to listen on/ },
  migrate: { args: ['--help=yes'], names: /--help takes no value/ },
  maintain: { args: ['--every', '5'], names: /--every: not a whole number from 60 to 86400: 5/ },
  doctor: { args: ['--json=yes'], names: /--json takes no value/ },
  smoke: {
    args: ['--timeout-ms', 'abc'],
    names: /--timeout-ms: not a whole number from 100 to 3600000: abc/,
  },
  'keys create': {
    args: ['--name', 'ci', '--scopes', 'ingest,root'],
    names: /--scopes: not a scope: root \(allowed: ingest, read, privacy, admin\)/,
  },
  'keys rotate': { args: ['--dry-run=no'], names: /--dry-run takes no value/ },
  'keys rotate-master': { args: ['--dry-run=1'], names: /--dry-run takes no value/ },
  'pii reveal': { args: ['123'], names: /not a message id: 123 \(expected a UUID\)/ },
  'pii export': { args: ['abc'], names: /not an IP address: abc/ },
  'pii erase': { args: ['::1'], names: /not an IPv4 address: ::1/ },
  'dead-letters list': { args: ['--limit', '0'], names: /--limit: not a whole number from 1 to 100000: 0/ },
  'dead-letters show': { args: ['not-an-id'], names: /not a message id: not-an-id/ },
  'dead-letters replay': { args: ['123'], names: /not a message id: 123/ },
  'dead-letters discard': {
    args: ['0190a6b2-0000-4000-8000-000000000000'],
    names: /not a message id: .* \(expected a UUID of version 7/,
  },
  help: { args: ['stat'], names: /unknown command "stat": did you mean "start"\?/ },
  version: { args: ['--help=1'], names: /--help takes no value/ },
};

/** Running without arguments where some are required, else with one too many. */
function missingOrExtra(name: string): { args: string[]; names: RegExp } {
  const spec = allCommands().find((s) => s.name === name)!;
  const requiredFlag = Object.entries(spec.options).find(([, o]) => o.required);
  if (requiredFlag) return { args: [], names: new RegExp(`missing --${requiredFlag[0]}`) };
  const required = spec.positionals.find((p) => p.required);
  if (required) return { args: [], names: new RegExp(`missing <${required.name}>`) };
  if (spec.validate) return { args: [], names: /missing <id…> \(or --all, --sender/ };
  if (spec.positionals.some((p) => p.variadic))
    return { args: ['keys', 'nosuch'], names: /unknown subcommand "nosuch"/ };
  return { args: ['extra'], names: /unexpected argument "extra" \(takes no arguments\)/ };
}

before(async () => {
  db = await createTestDatabase('cli_usage', { migrate: false });
  dataDir = mkdtempSync(join(tmpdir(), 'intake-cli-usage-'));
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
  };
});
after(async () => {
  await db.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('every command with --help, an unknown flag, a missing argument and a bad value', () => {
  test('helps or refuses, names the problem, and changes nothing', async () => {
    const specs = allCommands();
    assert.deepEqual(
      Object.keys(BAD_VALUE).sort(),
      specs.map((s) => s.name).sort(),
      'a case for every command',
    );
    const cases = specs.flatMap((s) => {
      const words = s.name.split(' ');
      const missing = missingOrExtra(s.name);
      const bad = BAD_VALUE[s.name]!;
      return [
        { name: s.name, kind: 'help', args: [...words, '--help'], code: 0 },
        // help wins over anything else on the line, even a state-changing command's flags
        { name: s.name, kind: '-h', args: [...words, ...bad.args, '-h'], code: 0 },
        {
          name: s.name,
          kind: 'unknown flag',
          args: [...words, '--bogus', '1'],
          code: 2,
          names: /unknown flag --bogus \(allowed: .*--help\)/,
        },
        {
          name: s.name,
          kind: 'missing/extra',
          args: [...words, ...missing.args],
          code: 2,
          names: missing.names,
        },
        { name: s.name, kind: 'bad value', args: [...words, ...bad.args], code: 2, names: bad.names },
      ];
    });
    const results = await runAll(cases);
    for (const [i, c] of cases.entries()) {
      const r = results[i]!;
      const what = `intake ${c.args.join(' ')} (${c.kind}): ${r.stdout}${r.stderr}`;
      assert.equal(r.code, c.code, what);
      if (c.code === 0) {
        assert.match(r.stdout, new RegExp(`^usage: intake ${c.name}`), what);
        assert.equal(r.stderr, '', what);
      } else {
        const lines = r.stderr.trimEnd().split('\n');
        assert.equal(lines.length, 2, what);
        assert.ok(lines[0]!.startsWith(`intake ${c.name === 'help' ? '' : c.name}`.trimEnd()), what);
        assert.match(lines[0]!, c.names!, what);
        assert.match(lines[1]!, /^run 'intake .*--help'$/, what);
        assert.equal(r.stdout, '', what);
      }
    }

    // Nothing was touched: no migration (so no data key either), no embedded PostgreSQL, no key file.
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const schemas = await c.query("SELECT nspname FROM pg_namespace WHERE nspname = 'intake'");
    await c.end();
    assert.deepEqual(schemas.rows, [], 'no migration applied, no data key created');
    assert.deepEqual(readdirSync(dataDir), [], 'no embedded PostgreSQL started, no key generated');
  });

  test('intake --help, --version, a group without its subcommand, an unknown command', async () => {
    const [help, version, V, keys, keysHelp, typo, flagFirst] = await runAll(
      [['--help'], ['--version'], ['-V'], ['keys'], ['keys', '--help'], ['stat'], ['--port', '9000']].map(
        (args) => ({
          args,
        }),
      ),
    );
    assert.equal(help!.code, 0);
    for (const s of allCommands()) assert.match(help!.stdout, new RegExp(`^  ${s.name} `, 'm'));
    assert.match(
      help!.stdout,
      /exit codes: 0 ok, 1 a check or the operation failed, 2 usage, 78 configuration/,
    );
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    assert.equal(version!.stdout, `intake ${pkg.version}\n`);
    assert.equal(V!.stdout, version!.stdout);
    assert.equal(keys!.code, 2);
    assert.match(
      keys!.stderr,
      /^intake keys: missing subcommand \(allowed: create, rotate, rotate-master\)\nrun 'intake keys --help'/,
    );
    assert.equal(keysHelp!.code, 0);
    assert.match(keysHelp!.stdout, /^usage: intake keys <subcommand>/);
    assert.match(keysHelp!.stdout, /keys rotate {2,}start a new PII data key/);
    assert.equal(typo!.code, 2);
    assert.match(
      typo!.stderr,
      /^intake: unknown command "stat": did you mean "start"\? \(allowed: start, api,/,
    );
    assert.equal(flagFirst!.code, 2);
    assert.match(flagFirst!.stderr, /^intake: unknown flag --port before the command/);
    assert.deepEqual(readdirSync(dataDir), []);
  });

  test('a bad setting exits 78 with the setting named, before anything starts', async () => {
    const saved = env;
    env = { ...env, INTAKE_PII_MASTER_KEY: 'too-short' };
    const r = await intake(['keys', 'rotate']);
    env = saved;
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /INTAKE_PII_MASTER_KEY must be 32 random bytes in base64/);
    assert.deepEqual(readdirSync(dataDir), []);
  });
});
