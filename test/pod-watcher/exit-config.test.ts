import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

/** A broken setting: the pod watcher exits 78 (as intake does) with one line naming it, before any API call. */
test('bad configuration exits 78 with one line that says what to set', () => {
  const r = spawnSync(process.execPath, ['bin/pod-watcher.js'], {
    env: {
      ...process.env,
      LEASE_DURATION_MS: '10000',
      RENEW_DEADLINE_MS: '10000',
      KUBECONFIG: '/nonexistent',
    },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 78, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0]!,
    /^pod-watcher: invalid configuration: LEASE_DURATION_MS \(10000\) must be greater than/,
  );
});
