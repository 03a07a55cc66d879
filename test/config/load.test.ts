import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateKey } from '../../src/auth/api-keys.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { ConfigError, loadConfig as load } from '../../src/config.ts';

/** The configuration `intake <command>` loads (what its declaration needs), or everything. */
const loadConfig = (env: Record<string, string>, command?: string) =>
  load(env, command === undefined ? undefined : commandNamed(command));

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
  // The key being retired during a master key rotation is mounted as a second Secret (docs/runbooks.md).
  const previous = Buffer.alloc(32, 9);
  const keyFile = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'previous');
  writeFileSync(keyFile, `${previous.toString('base64')}\n`);
  const rotating = loadConfig({
    INTAKE_PII_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
    INTAKE_PII_PREVIOUS_MASTER_KEY_FILE: keyFile,
  });
  assert.deepEqual(rotating.piiPreviousMasterKey, previous);
  assert.deepEqual(Object.keys(rotating.secretFiles), ['INTAKE_PII_PREVIOUS_MASTER_KEY_FILE']);
});

describe('each command needs only what it uses', () => {
  // The Kubernetes shared ConfigMap points every container at the key files, but only the API mounts
  // them: a command that does not use a setting must neither read it nor require it.
  const prod = {
    NODE_ENV: 'production',
    DATABASE_URL: 'postgres://u@h:5432/d',
    NATS_URL: 'nats://nats:4222',
    INTAKE_API_KEYS_FILE: '/nonexistent/api-keys',
    INTAKE_PII_MASTER_KEY_FILE: '/nonexistent/master-key',
  };
  /** The same, in a pod that mounts the PII key (the API's). */
  const withKey = <T extends { INTAKE_PII_MASTER_KEY_FILE?: string }>(env: T) => {
    const { INTAKE_PII_MASTER_KEY_FILE: _, ...rest } = env;
    return { ...rest, INTAKE_PII_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') };
  };

  test('migrate: the database and the queue it provisions; API keys are not read', () => {
    const c = loadConfig(prod, 'migrate');
    assert.deepEqual(c.apiKeys, []);
    assert.equal(c.natsUrl, 'nats://nats:4222');
    assert.throws(
      () => loadConfig({ ...prod, NATS_USER: 'half-a-credential' }, 'migrate'),
      /NATS_USER and NATS_PASSWORD go together/,
    );
    assert.throws(() => loadConfig({ NODE_ENV: 'production' }, 'migrate'), /DATABASE_URL is required/);
  });

  test('worker: no API keys (not even read), but the queue settings are checked', () => {
    const c = loadConfig(prod, 'worker');
    assert.deepEqual(c.apiKeys, []);
    assert.equal(c.natsUrl, 'nats://nats:4222');
    assert.throws(() => loadConfig({ ...prod, NATS_USER: 'u' }, 'worker'), /NATS_USER and NATS_PASSWORD/);
  });

  for (const command of ['api', 'start'] as const) {
    test(`${command}: API keys are required in production and their file must be readable`, () => {
      assert.throws(() => loadConfig(withKey(prod), command), /INTAKE_API_KEYS_FILE cannot be read/);
      const { INTAKE_API_KEYS_FILE: _, ...noKeys } = withKey(prod);
      assert.throws(
        () => loadConfig(noKeys, command),
        new RegExp(
          `INTAKE_API_KEYS \\(or INTAKE_API_KEYS_FILE\\) is required when NODE_ENV=production \\(\`intake ${command}\``,
        ),
      );
      const keys = JSON.stringify([generateKey('a', ['ingest']).entry]);
      assert.equal(loadConfig({ ...noKeys, INTAKE_API_KEYS: keys }, command).apiKeys.length, 1);
      // Outside production no keys means auth off (the API says so loudly at start-up).
      assert.deepEqual(loadConfig({}, command).apiKeys, []);
    });
  }

  test('doctor: reads the keys it reports on; a missing file or key set is its own failed check', () => {
    const { INTAKE_API_KEYS_FILE: _, ...noKeys } = prod;
    assert.deepEqual(loadConfig(noKeys, 'doctor').apiKeys, []);
    assert.deepEqual(loadConfig(prod, 'doctor').apiKeys, []);
    const keys = JSON.stringify([generateKey('a', ['ingest']).entry]);
    assert.equal(loadConfig({ ...noKeys, INTAKE_API_KEYS: keys }, 'doctor').apiKeys.length, 1);
    assert.throws(() => loadConfig({ ...noKeys, INTAKE_API_KEYS: '[{}]' }, 'doctor'), /INTAKE_API_KEYS/);
  });

  for (const command of ['pii reveal', 'keys rotate'] as const) {
    test(`${command}: the database; API keys are not read`, () => {
      assert.deepEqual(loadConfig(withKey(prod), command).apiKeys, []);
      assert.throws(() => loadConfig({ NODE_ENV: 'production' }, command), /DATABASE_URL is required/);
    });
  }

  test('the PII master key: checked before anything starts by the commands that use it, reported by doctor', () => {
    for (const command of ['start', 'api', 'pii reveal', 'keys rotate'] as const) {
      assert.throws(() => loadConfig(prod, command), /INTAKE_PII_MASTER_KEY_FILE cannot be read/, command);
      assert.throws(
        () => loadConfig({ ...withKey(prod), INTAKE_PII_MASTER_KEY: 'c2hvcnQ=' }, command),
        /INTAKE_PII_MASTER_KEY must be 32 random bytes in base64/,
      );
      const { INTAKE_PII_MASTER_KEY: _, ...noKey } = withKey(prod);
      assert.throws(
        () => loadConfig(noKey, command),
        /INTAKE_PII_MASTER_KEY .* is required when NODE_ENV=production/,
      );
      assert.equal(
        loadConfig(withKey(prod), command === 'start' || command === 'api' ? 'pii reveal' : command)
          .piiMasterKey?.length,
        32,
      );
    }
    for (const command of ['worker', 'migrate', 'dead-letters list'] as const) {
      assert.equal(loadConfig(prod, command).piiMasterKey, undefined, `${command} never reads the key`);
    }
    const doctor = loadConfig(prod, 'doctor');
    assert.match(doctor.piiMasterKeyProblem ?? '', /INTAKE_PII_MASTER_KEY_FILE cannot be read/);
  });

  test('INTAKE_MIGRATE_ON_START: on for start, off for api and worker, and either can be overridden', () => {
    assert.equal(loadConfig({ DATABASE_URL: prod.DATABASE_URL }, 'start').migrateOnStart, true);
    assert.equal(loadConfig({}, 'api').migrateOnStart, false);
    assert.equal(loadConfig({}, 'worker').migrateOnStart, false);
    assert.equal(loadConfig({ INTAKE_MIGRATE_ON_START: 'false' }, 'start').migrateOnStart, false);
    assert.equal(loadConfig({ INTAKE_MIGRATE_ON_START: 'true' }, 'worker').migrateOnStart, true);
    assert.throws(
      () => loadConfig({ INTAKE_MIGRATE_ON_START: 'yes' }, 'start'),
      /INTAKE_MIGRATE_ON_START="yes" is not valid: set true or false/,
    );
  });
});

test('INTAKE_WORKER_CONCURRENCY must leave the pool a connection for everything else', () => {
  assert.equal(loadConfig({}).workerConcurrency, 2);
  assert.equal(loadConfig({ INTAKE_WORKER_CONCURRENCY: '4', INTAKE_DB_POOL_SIZE: '5' }).workerConcurrency, 4);
  assert.throws(
    () => loadConfig({ INTAKE_WORKER_CONCURRENCY: '10', INTAKE_DB_POOL_SIZE: '10' }),
    /INTAKE_WORKER_CONCURRENCY=10 is not valid with INTAKE_DB_POOL_SIZE=10/,
  );
  assert.throws(
    () => loadConfig({ INTAKE_WORKER_CONCURRENCY: '2', INTAKE_DB_POOL_SIZE: '2' }, 'worker'),
    /INTAKE_WORKER_CONCURRENCY=2 is not valid with INTAKE_DB_POOL_SIZE=2/,
  );
  // An API process stores no batches: its pool may be smaller than the worker's concurrency.
  assert.equal(loadConfig({ INTAKE_DB_POOL_SIZE: '2' }, 'api').dbPoolSize, 2);
  assert.throws(() => loadConfig({ INTAKE_WORKER_CONCURRENCY: '0' }), /INTAKE_WORKER_CONCURRENCY="0"/);
});
