import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { renderCliDocs } from '../../src/commands/cli-docs.ts';

test('docs/cli.md is what the command declarations say (regenerate: node --import tsx scripts/gen-cli-docs.ts)', () => {
  const committed = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
  assert.equal(committed, renderCliDocs());
});
