#!/usr/bin/env node
// Runs every test file under test/ with node's own test runner (TypeScript loaded through tsx).
// Node 20's runner cannot glob .ts files itself, so the list is built here. Extra arguments narrow it:
//   node scripts/run-tests.mjs test/http   → only files under test/http
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

// test/containers needs a Docker engine and builds images: `npm run test:containers` runs it, not `npm test`.
const roots = process.argv.slice(2);
const files = roots.length
  ? roots.flatMap((r) => (r.endsWith('.ts') ? [r] : find(r)))
  : find('test').filter((f) => !f.startsWith(join('test', 'containers')));
const args = [
  '--import',
  'tsx',
  '--test',
  '--test-reporter=spec',
  '--test-concurrency=2',
  '--test-timeout=300000',
  ...files,
];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
