import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, quietLog, type TestDatabase } from '../../../harness/db.ts';
import { freePort } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { type Check, runDoctor } from '../../../src/commands/doctor-checks.ts';
import { commandNamed } from '../../../src/commands/registry.ts';
import { loadConfig } from '../../../src/config.ts';
import { setUpQueue } from '../../../src/queue/open-queue.ts';
import { tempDir, withJsm } from '../../helpers/nats-roles.ts';

/**
 * `intake doctor` on the NATS queue: what it says of the server, the stream and its usage, and that it
 * only looks (docs/deployment.md: doctor changes nothing, so a stream it finds missing stays missing).
 */
let server: NatsServer;
let db: TestDatabase;
const dir = tempDir('nats-doctor');

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('nats_doctor')]);
});
after(async () => {
  await server?.stop();
  await db?.drop();
  dir.remove();
});

const doctor = (env: Record<string, string>) =>
  runDoctor(
    loadConfig({ DATABASE_URL: db.url, INTAKE_DATA_DIR: dir.path, ...env }, commandNamed('doctor')),
    db.url,
  );
const line = (checks: Check[], name: string) => {
  const c = checks.find((x) => x.name === name);
  assert.ok(c, `no "${name}" line in ${JSON.stringify(checks)}`);
  return c;
};
const streamNames = () => withJsm(server.url, async (jsm) => (await jsm.streams.names().next()).sort());

test('NATS unreachable: the nats line fails and names the URL', async () => {
  const url = `nats://127.0.0.1:${await freePort()}`;
  const checks = await doctor({ ...natsEnv(server, uniqueStream('gone')), NATS_URL: url });
  const nats = line(checks, 'nats');
  assert.equal(nats.status, 'fail');
  assert.match(nats.detail, new RegExp(`^cannot connect to ${url}: `));
  assert.equal(
    checks.find((c) => c.name === 'stream'),
    undefined,
  );
});

test('no stream yet: warned about, and doctor creates nothing', async () => {
  const names = uniqueStream('missing');
  const before = await streamNames();
  const checks = await doctor(natsEnv(server, names));
  assert.equal(line(checks, 'nats').status, 'ok');
  assert.match(line(checks, 'nats').detail, /^reachable \(127\.0\.0\.1:\d+\)$/);
  const stream = line(checks, 'stream');
  assert.equal(stream.status, 'warn');
  assert.match(
    stream.detail,
    new RegExp(`^${names.stream} does not exist yet \\(created by "intake migrate"`),
  );
  assert.deepEqual(await streamNames(), before, 'doctor created no stream, bucket or probe stream');
  assert.equal(
    checks.find((c) => c.name === 'consumer'),
    undefined,
    'no stream: nothing to say of its consumer',
  );
});

test('a provisioned stream: matches, its usage, and the drift of a changed setting', async () => {
  const names = uniqueStream('present');
  const env = { ...natsEnv(server, names), NATS_MAX_MSGS: '200' };
  await setUpQueue(loadConfig({ DATABASE_URL: db.url, ...env }, commandNamed('migrate')), quietLog);
  const ok = await doctor(env);
  assert.deepEqual(line(ok, 'stream'), {
    name: 'stream',
    status: 'ok',
    detail: `${names.stream} matches the configuration`,
  });
  assert.deepEqual(line(ok, 'stream usage'), {
    name: 'stream usage',
    status: 'ok',
    detail:
      '0% of its limits (0 stream messages, 0 bytes; max_msgs 200); workers trim acknowledged messages from 50%',
  });
  assert.equal(
    ok.find((c) => c.name === 'stream replicas'),
    undefined,
    'one replica configured: nothing to say about peers',
  );

  assert.deepEqual(line(ok, 'consumer'), {
    name: 'consumer',
    status: 'ok',
    detail: `${names.consumer}: 0 stream messages waiting, 0 delivered and not yet acknowledged`,
  });

  const drifted = await doctor({ ...env, NATS_MAX_AGE_HOURS: '24', NATS_MAX_MSGS: '0' });
  const stream = line(drifted, 'stream');
  assert.equal(stream.status, 'warn');
  assert.equal(
    stream.detail,
    `${names.stream} differs (fixed at start where safe): max_age: want ${24 * 3600e9}, have ${168 * 3600e9}; ` +
      'max_msgs: want -1, have 200',
  );
});

test('the writer consumer: its backlog, and a warning once it is gone', async () => {
  const names = uniqueStream('consumer');
  const env = natsEnv(server, names);
  await setUpQueue(loadConfig({ DATABASE_URL: db.url, ...env }, commandNamed('migrate')), quietLog);
  await withJsm(server.url, async (jsm) => {
    for (let i = 0; i < 3; i++) await jsm.jetstream().publish(names.subject, '{}');
  });
  assert.equal(
    line(await doctor(env), 'consumer').detail,
    `${names.consumer}: 3 stream messages waiting, 0 delivered and not yet acknowledged`,
  );
  await withJsm(server.url, (jsm) => jsm.consumers.delete(names.stream, names.consumer));
  const gone = line(await doctor(env), 'consumer');
  assert.equal(gone.status, 'warn');
  assert.match(
    gone.detail,
    new RegExp(`^${names.consumer} does not exist yet \\(created by "intake migrate"`),
  );
});
