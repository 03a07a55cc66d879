import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  generatedBlock,
  productionSettings,
  readmeSettings,
  settingsTable,
  tableRows,
} from '../../src/config/docs.ts';
import { POD_WATCHER_SETTINGS } from '../../src/pod-watcher/config.ts';

/**
 * The configuration a user reads is the configuration the code reads: every variable the loader
 * (src/config/load.ts and rules.ts) reads is documented in README.md's table or docs/production.md's
 * (NATS), and every variable those tables name is read by the loader. `NAME_FILE` variants are covered
 * by the README's rule for secrets.
 */
const NAME = /\b(?:(?:INTAKE|NATS)_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL|PORT|HOST|LOG_LEVEL|NODE_ENV)\b/g;
const code = ['src/config/load.ts', 'src/config/rules.ts'].map((f) => readFileSync(f, 'utf8')).join('\n');
const readme = readFileSync('README.md', 'utf8');
const production = readFileSync('docs/production.md', 'utf8');

/** The rows of a markdown table under a heading: the names in its first column. */
function tableNames(doc: string, heading: string): Set<string> {
  const section = doc.slice(doc.indexOf(heading)).split(/\n## /)[0]!;
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return new Set(rows.flatMap((r) => r.split('|')[1]!.match(NAME) ?? []));
}

const names = new Set([...code.matchAll(NAME)].map((m) => m[0]));
/** X_FILE is X read from a file when X is a setting too (NATS_CREDS_FILE is a setting of its own). */
const read = new Set([...names].filter((n) => !(n.endsWith('_FILE') && names.has(n.slice(0, -5)))));
const documented = new Set([
  ...tableNames(readme, '## Configuration'),
  ...tableNames(production, '## Settings'),
]);

test('every setting the loader reads is documented', () => {
  const missing = [...read].filter((n) => !documented.has(n)).sort();
  assert.deepEqual(missing, [], 'add a row to README.md#configuration (NATS_*: docs/production.md#settings)');
});

test('every documented setting is read', () => {
  const stale = [...documented].filter((n) => !read.has(n)).sort();
  assert.deepEqual(stale, [], 'a documented variable the loader no longer reads');
});

test('the tables were found', () => {
  assert.ok(documented.size > 30, `only ${documented.size} documented names found`);
  assert.ok(read.size > 30, `only ${read.size} names read`);
});

test('the settings tables are what the tables of settings say (regenerate: node --import tsx scripts/gen-settings-docs.ts)', () => {
  const docs: Array<[file: string, source: string, block: string]> = [
    ['README.md', 'src/config/settings.ts', readmeSettings()],
    ['docs/production.md', 'src/config/settings.ts', productionSettings()],
    ['docs/pod-watcher.md', 'src/pod-watcher/config.ts', settingsTable(tableRows(POD_WATCHER_SETTINGS))],
  ];
  for (const [file, source, block] of docs)
    assert.equal(generatedBlock(readFileSync(file, 'utf8'), source), block, `${file} drifted from ${source}`);
});
