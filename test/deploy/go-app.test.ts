import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { needTool, REPO } from './tools.ts';

const run = promisify(execFile);
const cwd = join(REPO, 'go-app');
// Standard library only: the module proxy is never needed, so forbid it.
const env = { ...process.env, GOPROXY: 'off', GOFLAGS: '-mod=mod' };

test('go-app: gofmt, go vet and go test ./... pass', { skip: needTool('go', ['version']) }, async () => {
  const { stdout: unformatted } = await run('gofmt', ['-l', '.'], { cwd, env });
  assert.equal(unformatted, '', `gofmt would change: ${unformatted}`);
  await run('go', ['vet', './...'], { cwd, env });
  const { stdout } = await run('go', ['test', '-count=1', './...'], { cwd, env, timeout: 120_000 });
  assert.match(stdout, /^ok\s+example\.com\/go-app/m);
});
