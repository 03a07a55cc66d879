import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';

/**
 * `intake/client` as another project uses it: the package is built as `npm run build` builds it, and a
 * consumer that depends on it imports `intake/client` from JavaScript and type-checks against it from
 * TypeScript, through package.json "exports" only (no deep paths).
 */
const run = promisify(execFile);
const REPO = process.cwd();
const tsc = join(REPO, 'node_modules', '.bin', 'tsc');
const work = mkdtempSync(join(tmpdir(), 'intake-exports-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('a consumer imports intake/client from JavaScript and TypeScript', async () => {
  const pkg = join(work, 'intake');
  mkdirSync(pkg);
  copyFileSync(join(REPO, 'package.json'), join(pkg, 'package.json'));
  // npm run build's settings, narrowed to the client's files (the rest of src/ is not its concern).
  writeFileSync(
    join(work, 'tsconfig.client.json'),
    JSON.stringify({
      extends: join(REPO, 'tsconfig.build.json'),
      compilerOptions: {
        rootDir: join(REPO, 'src'),
        outDir: join(pkg, 'dist'),
        typeRoots: [join(REPO, 'node_modules', '@types')],
      },
      include: [join(REPO, 'src', 'client')],
    }),
  );
  await run(tsc, ['-p', join(work, 'tsconfig.client.json')], { cwd: REPO });

  const app = join(work, 'app');
  mkdirSync(join(app, 'node_modules'), { recursive: true });
  symlinkSync(pkg, join(app, 'node_modules', 'intake'));
  symlinkSync(join(REPO, 'node_modules', '@types'), join(app, 'node_modules', '@types'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true }));

  writeFileSync(
    join(app, 'use.mjs'),
    `import { IntakeClient, IntakeError } from 'intake/client';
     const c = new IntakeClient({ url: 'http://127.0.0.1:1', retry: { attempts: 1 } });
     try { await c.send({ ts: 1, sender: 's', message: {} }); } catch (e) {
       console.log(JSON.stringify({ isIntakeError: e instanceof IntakeError, permanent: e.permanent }));
     }`,
  );
  const js = await run(process.execPath, ['use.mjs'], { cwd: app });
  assert.deepEqual(JSON.parse(js.stdout), { isIntakeError: true, permanent: false });

  // Deep paths are not part of the package's surface.
  await assert.rejects(
    run(process.execPath, ['--input-type=module', '-e', "await import('intake/dist/client/client.js')"], {
      cwd: app,
    }),
    /ERR_PACKAGE_PATH_NOT_EXPORTED/,
  );

  writeFileSync(
    join(app, 'use.ts'),
    `import { IntakeClient, type Message } from 'intake/client';
     const m: Message = { ts: 1530228282, sender: 'svc', message: { a: 1 } };
     export const sent: Promise<{ id: string }> = new IntakeClient({ url: 'http://x' }).send(m);
     // @ts-expect-error: sender is required by the contract
     export const bad: Message = { ts: 1, message: {} };`,
  );
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true },
      files: ['use.ts'],
    }),
  );
  await run(tsc, ['-p', 'tsconfig.json'], { cwd: app });
});
