import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

test('defaults: embedded database, Postgres queue, port 8080', () => {
  const c = loadConfig({});
  assert.equal(c.port, 8080);
  assert.equal(c.databaseUrl, undefined);
  assert.equal(c.natsUrl, undefined);
  assert.equal(c.bodyLimit, 1024 * 1024);
  assert.match(c.dataDir, /\.intake$/);
});

test('every wrong setting is reported, each naming the variable and what to set', () => {
  try {
    loadConfig({
      PORT: 'eighty',
      DATABASE_URL: 'mysql://x',
      INTAKE_WORKER_BATCH_SIZE: '0',
      LOG_LEVEL: 'loud',
    });
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.problems.length, 4);
    assert.match(err.problems.join('\n'), /PORT="eighty" is not valid: set a whole number from 0 to 65535/);
    assert.match(err.problems.join('\n'), /DATABASE_URL is not a valid URL: set it like postgres:\/\//);
    assert.match(err.problems.join('\n'), /INTAKE_WORKER_BATCH_SIZE="0"/);
    assert.match(err.problems.join('\n'), /LOG_LEVEL="loud"/);
  }
});

test('production requires a database URL', () => {
  assert.throws(
    () => loadConfig({ NODE_ENV: 'production' }),
    /DATABASE_URL is required when NODE_ENV=production/,
  );
});

test('secrets can come from *_FILE', async () => {
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const f = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'db');
  writeFileSync(f, 'postgres://u@h:5432/d\n');
  assert.equal(loadConfig({ DATABASE_URL_FILE: f }).databaseUrl, 'postgres://u@h:5432/d');
  assert.throws(
    () => loadConfig({ DATABASE_URL_FILE: '/nonexistent/file' }),
    /DATABASE_URL_FILE cannot be read/,
  );
});
