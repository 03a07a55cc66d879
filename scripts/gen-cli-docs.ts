// Writes docs/cli.md from the command declarations in src/commands/ (test/cli/docs.test.ts fails when
// the committed file differs). Run: node --import tsx scripts/gen-cli-docs.ts
import { writeFileSync } from 'node:fs';
import { renderCliDocs } from '../src/commands/cli-docs.ts';

writeFileSync(new URL('../docs/cli.md', import.meta.url), renderCliDocs());
