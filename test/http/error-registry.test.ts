import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import ts from 'typescript';
import { ERROR_CODES } from '../../src/contract/error-codes.ts';
import { ERRORS } from '../../src/http/error-registry.ts';

/**
 * The error registry (src/http/error-registry.ts) is the one place a code's answer is declared. Held
 * here: every code of the layer-0 list has exactly one row; every code is raised somewhere in src/ (a
 * code nothing raises is a row nobody can see, or a raise site that went away); and docs/errors.md's
 * table lists exactly the registry's codes, each with its status.
 */
const REPO = new URL('../../', import.meta.url).pathname;
const SRC = join(REPO, 'src');
/** Where codes are declared rather than raised. */
const DECLARING = new Set(['contract/error-codes.ts', 'http/error-registry.ts']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/**
 * The string values of a file, read by the TypeScript parser: comments and prose do not count, nor do
 * literal types (`code: 'QUEUE_FULL' | …` names a code, it raises nothing).
 */
function stringLiterals(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
  const out: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isLiteralTypeNode(node)) return;
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) out.push(node.text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

describe('error registry: one row per code, each raised and documented', () => {
  test('every code has exactly one row, and every row is a code', () => {
    assert.deepEqual(Object.keys(ERRORS).sort(), [...ERROR_CODES].sort());
    for (const [code, row] of Object.entries(ERRORS)) {
      assert.ok(row.status >= 400 && row.status <= 599, `${code}: status ${row.status}`);
      assert.ok((row.detail?.split('%s').length ?? 1) <= 2, `${code}: at most one %s in its detail`);
    }
  });

  test('every code is raised somewhere in src/', () => {
    const files = sourceFiles(SRC).filter((f) => !DECLARING.has(relative(SRC, f)));
    assert.ok(files.length > 50, `read ${files.length} source files`);
    const raised = new Set(files.flatMap(stringLiterals));
    const never = ERROR_CODES.filter((c) => !raised.has(c));
    assert.deepEqual(never, [], 'codes no file of src/ raises (drop the row, or raise it)');
  });

  test('docs/errors.md lists exactly the registry’s codes, each with its status', () => {
    const doc = readFileSync(join(REPO, 'docs/errors.md'), 'utf8');
    const table = new Map(
      [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const),
    );
    assert.ok(table.size >= 10, `read ${table.size} rows of the table of codes`);
    const wrong: string[] = [];
    for (const [code, { status }] of Object.entries(ERRORS)) {
      if (!table.has(code)) wrong.push(`${code} (${status}) is not in the table of codes`);
      else if (table.get(code) !== status) wrong.push(`${code} is ${status}, not ${table.get(code)}`);
    }
    for (const code of table.keys()) {
      if (!Object.hasOwn(ERRORS, code))
        wrong.push(`${code} is documented but has no row in src/http/error-registry.ts`);
    }
    assert.deepEqual(wrong, []);
  });
});
