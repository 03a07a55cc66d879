import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { needTool, REPO } from './tools.ts';

/**
 * Every shell script in the repository passes shellcheck (Debian's package; .ci/run installs it), at
 * every severity. A script is a tracked file ending in .sh or starting with a sh/bash shebang.
 */
const run = promisify(execFile);

function shellScripts(): string[] {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: REPO, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean);
  return files.filter((f) => {
    if (f.endsWith('.sh')) return true;
    if (/\.(ts|js|mjs|json|ya?ml|md|sql|go|conf|txt)$/.test(f)) return false;
    try {
      return /^#!\s*\/(usr\/)?bin\/(env\s+)?(ba)?sh\b/.test(readFileSync(join(REPO, f), 'utf8').slice(0, 64));
    } catch {
      return false; // a symlink to a directory, or unreadable
    }
  });
}

test('the script finder finds the scripts this repository is known to have', () => {
  const found = shellScripts();
  for (const f of [
    '.ci/run',
    'deploy/deploy-apps',
    'scripts/containers/engine.sh',
    'test/deploy/fakes/kubectl',
  ])
    assert.ok(found.includes(f), `${f} not found among ${found.join(', ')}`);
});

test('shellcheck: every shell script is clean', { skip: needTool('shellcheck') }, async () => {
  const scripts = shellScripts();
  const r = await run('shellcheck', ['--severity=style', ...scripts], { cwd: REPO }).catch(
    (e: { code: number; stdout: string }) => e,
  );
  assert.equal('code' in r ? r.code : 0, 0, 'stdout' in r ? r.stdout : '');
});
