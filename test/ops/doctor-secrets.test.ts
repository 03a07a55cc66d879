import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';

/**
 * `intake doctor` in a production pod checks that every Secret file it is configured to read is
 * mounted (the Secrets an overlay expects: deploy/k8s/overlays/<env>/expected-secrets), and reports a
 * missing one as a failed check naming the variable and the path, instead of refusing to start.
 */
const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

describe('intake doctor: Secret files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'doctor-secrets-'));
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('doctor_secrets');
  });
  after(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const doctor = (env: Record<string, string>) =>
    run(process.execPath, [BIN, 'doctor'], {
      env: { ...process.env, LOG_LEVEL: 'silent', NODE_ENV: 'production', DATABASE_URL: db.url, ...env },
    }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        out: `${e.stdout}${e.stderr}`,
      }),
    );

  const masterKey = join(dir, 'master-key');
  const apiKeys = join(dir, 'api-keys');
  writeFileSync(masterKey, randomBytes(32).toString('base64'));
  writeFileSync(apiKeys, JSON.stringify([generateKey('a', ['ingest']).entry]));

  test('every configured Secret file mounted: ok, and which', async () => {
    const r = await doctor({ INTAKE_API_KEYS_FILE: apiKeys, INTAKE_PII_MASTER_KEY_FILE: masterKey });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^ok\s+secrets\s+mounted: INTAKE_API_KEYS_FILE, INTAKE_PII_MASTER_KEY_FILE$/m);
  });

  test('a Secret file that is not mounted: FAIL naming it, doctor exits 1 (not 78)', async () => {
    const missing = join(dir, 'not-mounted/api-keys');
    const r = await doctor({ INTAKE_API_KEYS_FILE: missing, INTAKE_PII_MASTER_KEY_FILE: masterKey });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`^FAIL\\s+secrets\\s+INTAKE_API_KEYS_FILE=${missing}: ENOENT`, 'm'));
    assert.match(r.out, /^FAIL\s+api keys\s+none configured/m);
    assert.match(r.out, /^ok\s+pii keys/m, 'the other checks still ran');
  });

  test('an empty Secret file: FAIL', async () => {
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    const r = await doctor({ INTAKE_API_KEYS_FILE: apiKeys, INTAKE_PII_MASTER_KEY_FILE: empty });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`^FAIL\\s+secrets\\s+INTAKE_PII_MASTER_KEY_FILE=${empty} is empty`, 'm'));
  });
});
