import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { type NatsServer, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import {
  applyDeferredLimits,
  messageStreamConfig,
  provisionQueue,
} from '../../../src/queue/nats/provision.ts';
import { withJsm } from '../../helpers/nats-roles.ts';

/**
 * The stream limits as configured (NATS_MAX_BYTES, NATS_MAX_MSGS, NATS_TRIM_AT_PERCENT), and the one
 * drift intake must not fix at once: a limit below what the stream holds, which the server would
 * enforce by deleting the oldest messages, unprocessed ones included (measured on 2.9).
 */
let server: NatsServer;
let nc: NatsConnection;
before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});
after(async () => {
  await nc?.close();
  await server?.stop();
});

test('NATS_MAX_BYTES takes bytes or a 1024-based unit; defaults mean no limit of its own', () => {
  const bytes = (v: string) => loadConfig({ NATS_MAX_BYTES: v }).nats.maxBytes;
  assert.equal(bytes('1048576'), 1024 ** 2);
  assert.equal(bytes('80GB'), 80 * 1024 ** 3);
  assert.equal(bytes('512 mb'), 512 * 1024 ** 2);
  assert.equal(bytes('64K'), 64 * 1024);
  assert.equal(bytes('2TB'), 2 * 1024 ** 4);
  const none = loadConfig({}).nats;
  assert.deepEqual([none.maxBytes, none.maxMsgs, none.trimAtPercent], [0, 0, 50]);
  const cfg = messageStreamConfig(none);
  assert.deepEqual([cfg.max_bytes, cfg.max_msgs, cfg.discard], [-1, -1, 'new']);
  const set = messageStreamConfig(loadConfig({ NATS_MAX_BYTES: '1GB', NATS_MAX_MSGS: '1000' }).nats);
  assert.deepEqual([set.max_bytes, set.max_msgs], [1024 ** 3, 1000]);
});

test('garbage in the limits stops start-up with what to set', () => {
  for (const [name, value] of [
    ['NATS_MAX_BYTES', '-5'],
    ['NATS_MAX_BYTES', '1.5GB'],
    ['NATS_MAX_BYTES', 'lots'],
    ['NATS_MAX_BYTES', '99999999999PB'],
    ['NATS_MAX_BYTES', '9999999999TB'],
    ['NATS_MAX_MSGS', '-1'],
    ['NATS_MAX_MSGS', '1e6'],
    ['NATS_TRIM_AT_PERCENT', '0'],
    ['NATS_TRIM_AT_PERCENT', '101'],
  ] as const) {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith(`${name}=`)),
      `${name}=${value}`,
    );
  }
});

test('a limit below what the stream holds is not applied (no message deleted), and is once it holds less', async () => {
  const names = uniqueStream('lower');
  const config = loadConfig({
    NATS_STREAM: names.stream,
    NATS_SUBJECT: names.subject,
    NATS_CONSUMER: names.consumer,
  });
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  await withJsm(server.url, (jsm) => provisionQueue(jsm, config.nats, { maxDeliver: 15 }, log));
  const js = jetstream(nc);
  for (let i = 0; i < 10; i++) await js.publish(names.subject, `{"i":${i}}`);

  const lowered = { ...config.nats, maxMsgs: 5 };
  const info = await withJsm(server.url, async (jsm) => {
    await provisionQueue(jsm, lowered, { maxDeliver: 15 }, log);
    return jsm.streams.info(names.stream);
  });
  assert.equal(info.state.messages, 10, 'nothing was deleted');
  assert.equal(info.config.max_msgs, -1, 'the lower limit was not applied');
  assert.ok(
    lines.some(
      (l) => l.level === 50 && /holds 10 messages, more than the configured max_msgs=5/.test(String(l.msg)),
    ),
    JSON.stringify(lines.filter((l) => Number(l.level) >= 40)),
  );

  // Once the stream holds less (workers trimmed what they acknowledged), a worker applies it.
  const later = await withJsm(server.url, async (jsm) => {
    await jsm.streams.purge(names.stream, { keep: 4 });
    await applyDeferredLimits(jsm, lowered, await jsm.streams.info(names.stream), log);
    return jsm.streams.info(names.stream);
  });
  assert.equal(later.config.max_msgs, 5);
  assert.equal(later.state.messages, 4);
});
