import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import ts from 'typescript';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * `@intake/client` as another project gets it: packed with `npm pack` from packages/client (whose
 * prepack builds dist/), installed from the tarball into a scratch ESM project and a TypeScript
 * (NodeNext) project with no registry reachable, imported through package.json "exports" only, and used
 * to send a message to a real running intake that then stores it. The tarball holds only what a
 * consumer needs, and the client's import graph reaches nothing of the server and no dependency.
 */
const run = promisify(execFile);
const REPO = new URL('../../', import.meta.url).pathname;
const PACKAGE = join(REPO, 'packages/client');
const tsc = join(REPO, 'node_modules/.bin/tsc');
// Nothing here may need the network: a registry that refuses every connection makes sure of it.
const offline = { ...process.env, npm_config_registry: 'http://127.0.0.1:9/', npm_config_offline: 'true' };
const npm = (args: string[], cwd: string) =>
  run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, env: offline });

/** Files no published tarball of this repository may carry. */
const NEVER = /(^|\/)(\.env|\.github|go-app|test|harness|scripts|deploy|node_modules|\.intake)(\/|$)|secret/i;

interface Packed {
  filename: string;
  files: Array<{ path: string }>;
}

describe('@intake/client as a consumer installs it', () => {
  const work = mkdtempSync(join(tmpdir(), 'intake-client-pkg-'));
  let tarball: string;
  let packed: Packed;
  let app: TestApp;

  before(async () => {
    const out = await npm(['pack', '--json', '--pack-destination', work], PACKAGE);
    packed = (JSON.parse(out.stdout) as Packed[])[0]!;
    tarball = join(work, packed.filename);
    app = await startTestApp('client_pkg');
  });
  after(async () => {
    await app?.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** A scratch project with the tarball installed offline; returns its folder. */
  const project = async (name: string): Promise<string> => {
    const dir = join(work, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
    await npm(['install', tarball], dir);
    return dir;
  };

  /** Waits until intake has stored message `id`; returns the stored record. */
  const stored = async (id: string) =>
    waitFor(`message ${id} stored`, async () => {
      const res = await fetch(`${app.url}/v1/messages/${id}`);
      return res.status === 200 ? ((await res.json()) as { sender: string }) : undefined;
    });

  test('the tarball holds the built client and nothing else', () => {
    const files = packed.files.map((f) => f.path).sort();
    assert.deepEqual(files, [
      'README.md',
      'dist/client.d.ts',
      'dist/client.js',
      'dist/index.d.ts',
      'dist/index.js',
      'package.json',
    ]);
    const manifest = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'bundleDependencies'])
      assert.equal(manifest[field], undefined, `the client declares no ${field}`);
  });

  test('the repository root packs no .env, tests, CI, go-app or deploy secrets either', async () => {
    // Root is the server (private, shipped as an image); a `files` allow-list keeps its tarball to
    // bin/, dist/ and sql/ should anyone pack it. --ignore-scripts: the list, not a 20 s build.
    const out = await npm(['pack', '--dry-run', '--json', '--ignore-scripts'], REPO);
    const files = (JSON.parse(out.stdout) as Packed[])[0]!.files.map((f) => f.path);
    assert.ok(files.includes('bin/intake.js') && files.some((f) => f.startsWith('sql/')), files.join(' '));
    assert.deepEqual(
      files.filter((f) => NEVER.test(f) || !/^(bin|dist|sql)\/|^(package\.json|README\.md)$/.test(f)),
      [],
    );
  });

  test('a plain ESM project installs it offline with nothing else, imports it and sends a message', async () => {
    const dir = await project('esm');
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(lock.packages).sort(), ['', 'node_modules/@intake/client']);
    writeFileSync(
      join(dir, 'send.mjs'),
      `import { IntakeClient, IntakeError, NotStoredError } from '@intake/client';
const intake = new IntakeClient({ url: process.env.INTAKE_URL });
const { id } = await intake.send({ ts: 1530228282, sender: 'client-esm', message: { from: 'tarball' } });
const { status } = await intake.waitUntilStored(id, 15000);
let refused;
try { await intake.send({ ts: -1, sender: 'client-esm', message: {} }); } catch (e) { refused = e; }
const never = await intake.waitUntilStored('0190a6e4-0000-7000-8000-000000000000', 100).catch((e) => e);
console.log(JSON.stringify({ id, status, refused: refused instanceof IntakeError && refused.permanent && refused.code,
  never: never instanceof NotStoredError && never.outcome }));
`,
    );
    const out = await run(process.execPath, ['send.mjs'], {
      cwd: dir,
      env: { ...process.env, INTAKE_URL: app.url },
    });
    const r = JSON.parse(out.stdout) as { id: string; status: string; refused: string; never: string };
    assert.equal(r.refused, 'INVALID_MESSAGE');
    assert.equal(r.status, 'stored');
    assert.equal(r.never, 'timeout');
    assert.equal((await stored(r.id)).sender, 'client-esm');

    // Deep paths are not part of the package's surface.
    await assert.rejects(
      run(process.execPath, ['--input-type=module', '-e', "await import('@intake/client/dist/client.js')"], {
        cwd: dir,
      }),
      /ERR_PACKAGE_PATH_NOT_EXPORTED/,
    );
  });

  test('a TypeScript project (NodeNext, strict, lib checked) compiles against it and sends', async () => {
    const dir = await project('ts');
    // @types/node, as any Node.js TypeScript project has it (linked: the test stays offline).
    mkdirSync(join(dir, 'node_modules/@types'));
    symlinkSync(join(REPO, 'node_modules/@types/node'), join(dir, 'node_modules/@types/node'));
    writeFileSync(
      join(dir, 'send.ts'),
      `import { IntakeClient, IntakeError, type Message } from '@intake/client';
const m: Message = { ts: 1530228282, sender: 'client-ts', message: { from: 'tsc' } };
const intake = new IntakeClient({ url: process.env.INTAKE_URL!, retry: { attempts: 3 } });
const sent: { id: string } = await intake.send(m);
const code: string | undefined = new IntakeError('x', 400, undefined, true).code;
// @ts-expect-error: sender is required by the contract
export const bad: Message = { ts: 1, message: {} };
console.log(JSON.stringify({ id: sent.id, code: code ?? null }));
`,
    );
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          skipLibCheck: false,
          types: ['node'],
          outDir: 'out',
        },
        files: ['send.ts'],
      }),
    );
    await run(tsc, ['-p', 'tsconfig.json'], { cwd: dir });
    const out = await run(process.execPath, ['out/send.js'], {
      cwd: dir,
      env: { ...process.env, INTAKE_URL: app.url },
    });
    const r = JSON.parse(out.stdout) as { id: string };
    assert.equal((await stored(r.id)).sender, 'client-ts');
  });

  test("the client's import graph reaches no server module and no dependency", () => {
    const config = ts.getParsedCommandLineOfConfigFile(
      join(PACKAGE, 'tsconfig.json'),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(String(d.messageText)),
      },
    )!;
    const program = ts.createProgram(config.fileNames, config.options);
    const own = program
      .getSourceFiles()
      .map((f) => relative(REPO, f.fileName))
      .filter((f) => !f.startsWith('node_modules/') && !f.includes('/node_modules/'));
    assert.deepEqual(own.sort(), ['src/client/client.ts', 'src/client/index.ts']);
    // Every import of those files: relative within src/client, or a Node.js builtin.
    for (const file of own) {
      const imports = ts
        .preProcessFile(readFileSync(join(REPO, file), 'utf8'), true, true)
        .importedFiles.map((i) => i.fileName);
      for (const spec of imports) {
        const ok = spec.startsWith('node:') || dirname(join(dirname(file), spec)) === 'src/client';
        assert.ok(ok, `${file} imports ${spec}`);
      }
    }
    // The installed package's JavaScript likewise.
    for (const f of packed.files.filter((x) => x.path.endsWith('.js'))) {
      const js = readFileSync(join(PACKAGE, f.path), 'utf8');
      for (const [, spec] of js.matchAll(/\bfrom\s+['"]([^'"]+)['"]/g))
        assert.ok(spec!.startsWith('node:') || spec!.startsWith('./'), `${f.path} imports ${spec}`);
    }
  });
});
