// Publish throughput to JetStream, side by side in one run: (a) one publish awaited per message, as a
// naive handler would do it, vs (b) intake's grouped publisher (envelopes, src/queue/nats/publisher.ts).
// Ratios, not absolute figures, are the point: both share the machine, server and message shape.
//
//   node --import tsx scripts/bench-publish.ts
//
// BENCH_MESSAGES (default 20000 per run), BENCH_CONCURRENCY (200 callers), BENCH_ROUNDS (2, alternating
// a/b), NATS_PUBLISH_CONCURRENCY / NATS_PUBLISH_LINGER_MS / INTAKE_ENQUEUE_MAX_BATCH tune (b).
// Without BENCH_NATS_URL a private nats-server (/usr/sbin/nats-server or NATS_SERVER_BIN) is started on
// a free loopback port with a temporary store, and killed by its PID at the end.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { freePort } from '../harness/intake-process.ts';
import { queuedMessage } from '../harness/messages.ts';
import { loadConfig } from '../src/config.ts';
import type { QueuedMessage } from '../src/contract/queued-message.ts';
import { createLogger } from '../src/ops/logger.ts';
import { openNatsQueue } from '../src/queue/nats/mod.ts';
import { natsQueueSettings } from '../src/queue/open-queue.ts';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

async function startServer(): Promise<{ url: string; stop: () => void }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  const bin = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';
  const child: ChildProcess = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], {
    stdio: 'ignore',
  });
  const url = `nats://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await (await connect({ servers: url })).close();
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    stop: () => {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `MESSAGES` calls of `one` from `CONCURRENCY` callers; returns messages per second. Messages are
 * made before the clock starts (random bytes for the IP fields cost ~10 µs each, more than a publish).
 */
async function drive(one: (m: QueuedMessage) => Promise<unknown>): Promise<number> {
  const messages = Array.from({ length: MESSAGES }, (_, n) =>
    queuedMessage(n, { sender: 'bench-service', withIp: true }),
  );
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < MESSAGES) await one(messages[next++]!);
    }),
  );
  return MESSAGES / ((performance.now() - started) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const server = process.env.BENCH_NATS_URL ? undefined : await startServer();
const natsUrl = process.env.BENCH_NATS_URL ?? server!.url;
const suffix = randomBytes(3).toString('hex');
const config = loadConfig({
  ...process.env,
  NATS_URL: natsUrl,
  NATS_STREAM: `BENCH_${suffix}`,
  NATS_SUBJECT: `bench.${suffix}`,
  NATS_CONSUMER: `bench_${suffix}`,
});
const log = createLogger({ level: 'warn' });
const queue = await openNatsQueue(natsQueueSettings(config), { log, roles: ['api'] });
const { producer } = queue;
const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const streamMessages = async () => (await jsm.streams.info(config.nats.stream)).state.messages;

const naive: number[] = [];
const grouped: number[] = [];
const perEnvelope: number[] = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    naive.push(await drive((m) => js.publish(config.nats.subject, JSON.stringify(m), { msgID: m.id })));
    const before = await streamMessages();
    grouped.push(await drive((m) => producer.publish([{ message: m }])));
    perEnvelope.push(MESSAGES / ((await streamMessages()) - before));
    console.log(
      `round ${round + 1}: (a) per-message ${Math.round(naive[round]!)} msg/s, (b) grouped ${Math.round(grouped[round]!)} msg/s`,
    );
  }
  const a = median(naive);
  const b = median(grouped);
  console.log(
    JSON.stringify({
      messages: MESSAGES,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      linger_ms: config.nats.publishLingerMs,
      max_batch: config.enqueueMaxBatch,
      publish_concurrency: config.nats.publishConcurrency,
      a_per_message_msgs_per_s: Math.round(a),
      b_grouped_msgs_per_s: Math.round(b),
      ratio_b_over_a: Number((b / a).toFixed(2)),
      messages_per_envelope: Number(median(perEnvelope).toFixed(1)),
    }),
  );
} finally {
  await queue.close();
  await jsm.streams.delete(config.nats.stream).catch(() => {});
  await jsm.streams.delete(`KV_${config.nats.stream}-idempotency`).catch(() => {});
  await nc.close();
  server?.stop();
}
