import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

/**
 * SQL lives only in src/store/ (README, docs/architecture.md): one function per statement there, named
 * for what it does, as graphile-worker keeps one file per operation under src/sql/. Everywhere else in
 * src/ a statement is found two ways, read with the TypeScript parser so comments never count:
 * - a call of a `query` method whose first argument is written in place (a string or template, or an
 *   object literal's `text`) and reads as SQL, in any case;
 * - any string or template that starts like an SQL statement in upper case (a statement kept in a
 *   constant and run elsewhere).
 */
const SRC = 'src';
const STORE = join(SRC, 'store');

/** The start of an SQL statement: a keyword, and for the common verbs what follows them. */
const STATEMENT =
  /^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\S+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\(|BEGIN\b|COMMIT\b|ROLLBACK\b|SAVEPOINT\s|RELEASE\s+SAVEPOINT\s|SHOW\s|SET\s+(LOCAL\s+)?\w+\s*(=|TO\s)|COPY\s|TRUNCATE\s|LOCK\s+TABLE\s|(CREATE|ALTER|DROP)\s+(TABLE|INDEX|SCHEMA|ROLE|FUNCTION|VIEW)\s|GRANT\s|REVOKE\s|VACUUM\b|ANALYZE\b|NOTIFY\s|LISTEN\s)/;

/** The text of a string or template written in place (a template's parts joined, placeholders dropped). */
function literalText(node: ts.Node): string | undefined {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isTemplateExpression(node))
    return [node.head.text, ...node.templateSpans.map((s) => s.literal.text)].join(' ');
  return undefined;
}

/** The SQL a `query(…)` call passes in place, if any: its first argument, or that object's `text`. */
function queryText(call: ts.CallExpression): string | undefined {
  const callee = call.expression;
  if (!ts.isPropertyAccessExpression(callee) || callee.name.text !== 'query') return undefined;
  const arg = call.arguments[0];
  if (!arg) return undefined;
  if (ts.isObjectLiteralExpression(arg)) {
    for (const p of arg.properties)
      if (ts.isPropertyAssignment(p) && p.name.getText() === 'text') return literalText(p.initializer);
    return undefined;
  }
  return literalText(arg);
}

/** The SQL statements written in a source text, as `file:line: start of the statement`. */
function sqlStatements(file: string, source: string): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const report = (node: ts.Node, text: string) => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    found.push(`${file}:${line}: ${text.trim().replace(/\s+/g, ' ').slice(0, 60)}`);
  };
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      const text = queryText(node);
      if (text !== undefined && STATEMENT.test(text.toUpperCase())) {
        report(node, text);
        return; // its literal is reported once, as the call
      }
    }
    const text = literalText(node);
    if (text !== undefined && STATEMENT.test(text)) report(node, text);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('architecture: SQL only in src/store/', () => {
  it('no SQL statement is written in src/ outside src/store/', () => {
    const outside = files(SRC).filter((f) => !f.startsWith(`${STORE}/`));
    assert.ok(outside.length > 100, `only ${outside.length} files read`);
    const found = outside.flatMap((f) => sqlStatements(f, readFileSync(f, 'utf8')));
    assert.deepEqual(found, [], 'move each statement into a function of src/store/ named for what it does');
  });

  it('the detector finds statements in query calls and constants, and not prose or comments', () => {
    const planted = [
      "await db.query('SELECT 1');",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the source text of a planted template
      'await tx.query(`SAVEPOINT ${sp}`);',
      "await client.query({ text: 'delete from intake.queue where id = $1', values: [id] });",
      "await client.query('commit');",
      "const RELEASE = 'DELETE FROM intake.idempotency_keys WHERE key = ANY($1)';",
      'const q = `INSERT INTO intake.audit_log (action) VALUES ($1)`;',
      "log.warn({ err }, 'Postgres queue COMMIT not confirmed: outcome unknown');",
      "throw new Error('select a scope: ingest, read');",
      '// SELECT id FROM intake.data_keys',
      'await newestDataKey(db);',
      'await db.query(statement);',
    ].join('\n');
    assert.deepEqual(sqlStatements('planted.ts', planted), [
      'planted.ts:1: SELECT 1',
      'planted.ts:2: SAVEPOINT',
      'planted.ts:3: delete from intake.queue where id = $1',
      'planted.ts:4: commit',
      'planted.ts:5: DELETE FROM intake.idempotency_keys WHERE key = ANY($1)',
      'planted.ts:6: INSERT INTO intake.audit_log (action) VALUES ($1)',
    ]);
  });

  it('src/store/ itself is read the same way (the detector sees its statements)', () => {
    const inStore = files(STORE).flatMap((f) => sqlStatements(f, readFileSync(f, 'utf8')));
    assert.ok(inStore.length > 30, `only ${inStore.length} statements found in src/store/`);
  });
});
