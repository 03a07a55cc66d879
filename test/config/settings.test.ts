import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ConfigNeeds } from '../../src/config/needs.ts';
import { EVERY_NEED } from '../../src/config/needs.ts';
import type { Env } from '../../src/config/readers.ts';
import { SETTINGS, type SettingTable } from '../../src/config/settings.ts';
import { loadConfig } from '../../src/config.ts';
import { loadConfig as loadPodWatcherConfig, POD_WATCHER_SETTINGS } from '../../src/pod-watcher/config.ts';

/**
 * The table of settings is what the loader reads, no more and no less, so the docs generated from it
 * are true: every variable a loader looks up in the environment is a row (or a row's `NAME_FILE`), every
 * row is looked up, and a row gated by a need is looked up only by a command that declares it.
 */

/** The variables `load` looks up in an empty environment that records every lookup. */
function lookedUp(load: (env: Env) => unknown): Set<string> {
  const seen = new Set<string>();
  const env = new Proxy({} as Env, {
    get(_, name) {
      if (typeof name === 'string') seen.add(name);
      return undefined;
    },
  });
  load(env);
  return seen;
}

/** The rows `seen` covers: NAME_FILE counts as its secret NAME. */
function rowsOf(seen: Set<string>, table: SettingTable): string[] {
  const row = (n: string) =>
    n.endsWith('_FILE') && table[n.slice(0, -5)]?.secret === 'value' ? n.slice(0, -5) : n;
  return [...new Set([...seen].map(row))];
}

describe('the table of settings is what the loader reads', () => {
  test('intake: every row is read, and nothing else', () => {
    const read = new Set(
      rowsOf(
        lookedUp((env) => loadConfig(env)),
        SETTINGS,
      ),
    );
    assert.deepEqual([...read].sort(), Object.keys(SETTINGS).sort());
  });

  test('the pod watcher: every row is read, and nothing else', () => {
    const sources = { hostname: () => 'h', inClusterNamespace: () => undefined };
    const read = new Set(
      rowsOf(
        lookedUp((env) => loadPodWatcherConfig(env, sources)),
        POD_WATCHER_SETTINGS,
      ),
    );
    assert.deepEqual([...read].sort(), Object.keys(POD_WATCHER_SETTINGS).sort());
  });

  test('a row gated by a need is read only by a command that declares that need', () => {
    const gated = (need: string) =>
      Object.entries(SETTINGS)
        .filter(([, s]) => 'need' in s && s.need === need)
        .map(([n]) => n)
        .sort();
    const common = Object.keys(SETTINGS).filter((n) => !('need' in SETTINGS[n as keyof typeof SETTINGS]));
    const readFor = (needs: ConfigNeeds) =>
      rowsOf(
        lookedUp((env) => loadConfig(env, { name: 'test', needs })),
        SETTINGS,
      )
        .filter((n) => !common.includes(n))
        .sort();
    assert.deepEqual(readFor({}), []);
    assert.deepEqual(readFor({ queue: true }), gated('queue'));
    for (const mode of ['required', 'read'] as const) {
      assert.deepEqual(readFor({ apiKeys: mode }), gated('apiKeys'), `apiKeys: ${mode}`);
      assert.deepEqual(readFor({ piiKey: mode }), gated('piiKey'), `piiKey: ${mode}`);
    }
    assert.deepEqual(readFor({ apiKeys: 'unused', piiKey: 'unused', queue: false }), []);
    assert.deepEqual(
      readFor(EVERY_NEED),
      [...gated('queue'), ...gated('apiKeys'), ...gated('piiKey')].sort(),
    );
  });
});
