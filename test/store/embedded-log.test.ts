import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { quietLog } from '../../harness/db.ts';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres.ts';

/**
 * Starting the embedded PostgreSQL again and again (every `npm start`) must not leave a file behind per
 * start: its log is one file in its data directory, moved aside once it is large.
 */
test('the embedded PostgreSQL keeps one log per data directory, rotated, and nothing in the system tmpdir', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'intake-embedded-log-'));
  const strays = () => readdirSync(tmpdir()).filter((f) => /^intake-postgres-\d+\.log$/.test(f)).length;
  const before = strays();
  try {
    for (let i = 0; i < 2; i++) await (await startEmbeddedPostgres(dir, quietLog)).stop();
    const log = join(dir, 'pg', 'server.log');
    const starts = readFileSync(log, 'utf8').match(/starting PostgreSQL/g) ?? [];
    assert.equal(starts.length, 2, 'both starts append to the one log');
    assert.equal(strays(), before, 'no log left in the system tmpdir');

    writeFileSync(log, 'x'.repeat(9 * 2 ** 20));
    await (await startEmbeddedPostgres(dir, quietLog)).stop();
    assert.equal(statSync(`${log}.1`).size, 9 * 2 ** 20, 'the large log was moved aside');
    assert.ok(statSync(log).size < 2 ** 20, 'the new log starts small');
    assert.deepEqual(
      readdirSync(join(dir, 'pg')).filter((f) => f.includes('.log')),
      ['server.log', 'server.log.1'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
