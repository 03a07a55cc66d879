/**
 * What OTLP export costs, side by side in one run (docs/tracing.md#export):
 *
 * 1. The seam alone, in this process: CPU µs per message of the calls intake makes per message (a
 *    request span, a publish span, and a share of a worker batch span linked to 500 messages) with
 *    `idOnlyTracing` (export off) and with the OpenTelemetry SDK exporting to a collector stand-in
 *    (another process that takes the posts and answers 200), over http/protobuf and http/json.
 * 2. intake end to end: `api` and `worker` processes (bench/stack.ts) under single-message POSTs, export
 *    off and on, per queue: messages/s and CPU µs per message of each process (from /proc), and the
 *    collector stand-in's posts, so that "on" is seen to export.
 *
 * Rounds alternate off and on so drift on the shared cores hits both alike; medians with min–max.
 *
 *   node --import tsx scripts/bench-tracing.ts [--rounds 3] [--seconds 6] [--connections 50]
 *        [--queues pg,nats] [--messages 200000] [--seam-only] [--out FILE]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { readTracingConfig } from '../src/config/tracing.ts';
import { idOnlyTracing, type TraceContext, type Tracing } from '../src/ops/tracing.ts';
import { startTracing } from '../src/ops/tracing-start.ts';
import { runLoad } from './bench/load.ts';
import { CpuMeter } from './bench/proc.ts';
import { type QueueKind, Stack } from './bench/stack.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    connections: { type: 'string' },
    queues: { type: 'string' },
    messages: { type: 'string' },
    'seam-only': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const rounds = Number(values.rounds ?? 3);
const seconds = Number(values.seconds ?? 6);
const connections = Number(values.connections ?? 50);
const queues = (values.queues ?? 'pg,nats').split(',') as QueueKind[];
const seamMessages = Number(values.messages ?? 200_000);
const outFile = values.out ?? 'bench-tracing.json';

type Figures = Record<string, number>;

const stat = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s.at(-1)! };
};

/**
 * A collector stand-in in its own process (its CPU is not intake's): answers every POST with 200 and
 * counts requests and bytes. The test receiver (harness/otlp-receiver.ts) decodes; here only the
 * exporter's side is measured.
 */
interface Sink {
  url: string;
  child: ChildProcess;
  /** Posts and bytes received so far. */
  count(): Promise<{ posts: number; bytes: number }>;
}

async function startSink(): Promise<Sink> {
  const code = `
    const http = require('node:http');
    let posts = 0, bytes = 0;
    const s = http.createServer((req, res) => {
      if (req.url === '/count') return res.end(JSON.stringify({ posts, bytes }));
      req.on('data', (d) => { bytes += d.length; });
      req.on('end', () => { posts++; res.writeHead(200, { 'content-type': req.headers['content-type'] || 'application/json' }).end(); });
    });
    s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
  `;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const url = `http://127.0.0.1:${line.toString().trim()}`;
  return {
    url,
    child,
    count: async () => (await (await fetch(`${url}/count`)).json()) as { posts: number; bytes: number },
  };
}

/** CPU µs per message of what intake calls per message, with one tracing. */
async function seam(tracing: Tracing, messages: number): Promise<number> {
  const BATCH = 500;
  const parent: TraceContext = {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    sampled: true,
  };
  const t0 = process.cpuUsage();
  let links: TraceContext[] = [];
  for (let i = 0; i < messages; i++) {
    const req = tracing.startRequest(parent, 'POST /v1/messages', {
      'http.request.method': 'POST',
      'http.route': '/v1/messages',
      'url.path': '/v1/messages',
      'url.scheme': 'http',
    });
    const pub = tracing.startPublish(req.context, { 'messaging.batch.message_count': 1 });
    pub.end();
    req.setAttributes({ 'http.response.status_code': 202 });
    req.end();
    links.push(pub.context);
    if (links.length === BATCH) {
      tracing.startBatch(links, {}).end();
      links = [];
    }
    // Let the exporter's sockets run, as they would between requests (a request is an event-loop turn
    // in intake; yielding more rarely fills the processor's queue and drops spans, which would flatter).
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  await tracing.shutdown(); // the last exports, inside the measurement
  const used = process.cpuUsage(t0);
  return (used.user + used.system) / messages;
}

async function seamRound(f: Figures, sink: Sink): Promise<void> {
  const sinkUrl = sink.url;
  const log = pino({ level: 'warn' });
  // Warm-up (JIT), not measured; then off and ids-only alternate, five times each, medians: one run
  // of each, one after the other, differs by half just from which ran first.
  await seam(idOnlyTracing, 50_000);
  const off = await startTracing(readTracingConfig({}), 'api', log);
  const offRuns: number[] = [];
  const idRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    offRuns.push(await seam(off, seamMessages / 5));
    idRuns.push(await seam(idOnlyTracing, seamMessages / 5));
  }
  f['seam.off.cpu_us_per_msg'] = stat(offRuns).median;
  f['seam.id_only.cpu_us_per_msg'] = stat(idRuns).median;
  for (const protocol of ['http/protobuf', 'http/json']) {
    const on = await startTracing(
      readTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_EXPORTER_OTLP_PROTOCOL: protocol }),
      'api',
      log,
      { system: 'nats', destination: 'intake.messages' },
    );
    await seam(on, 10_000); // its warm-up; this tracing is shut down by it, so start another
    const measured = await startTracing(
      readTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_EXPORTER_OTLP_PROTOCOL: protocol }),
      'api',
      log,
      { system: 'nats', destination: 'intake.messages' },
    );
    const before = await sink.count();
    const name = `seam.on_${protocol.slice(5)}`;
    f[`${name}.cpu_us_per_msg`] = await seam(measured, seamMessages);
    // Bytes that reached the collector per message: equal across rounds when no span was dropped.
    f[`${name}.exported_bytes_per_msg`] = ((await sink.count()).bytes - before.bytes) / seamMessages;
  }
  f['ratio.seam.off_vs_id_only'] = f['seam.off.cpu_us_per_msg']! / f['seam.id_only.cpu_us_per_msg']!;
}

/** intake on one queue with export off or on: single POSTs, CPU per message of API and worker. */
async function e2e(kind: QueueKind, mode: 'off' | 'on', sink: Sink, f: Figures) {
  const env: Record<string, string> =
    mode === 'on'
      ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }
      : {};
  const stack = await Stack.create(kind, env);
  try {
    await stack.startApi();
    await stack.startWorker();
    const spec = {
      url: `${stack.api!.url}/v1/messages`,
      headers: { 'content-type': 'application/json' },
      bodyBase64: Buffer.from(
        JSON.stringify({ ts: '1530228282', sender: 'bench', message: { foo: 'bar' }, priority: 2 }),
      ).toString('base64'),
      connections,
    };
    const warm = await runLoad({ ...spec, seconds: 2 });
    await stack.waitStored(warm.ok, warm.ok);
    const before = await sink.count();
    const cpu = new CpuMeter([stack.api!.child.pid!, stack.worker!.child.pid!]);
    cpu.start();
    const load = await runLoad({ ...spec, seconds });
    await stack.waitStored(warm.ok + load.ok, warm.ok + load.ok);
    const [api, worker] = cpu.read();
    const p = `${kind}.${mode}`;
    f[`${p}.msgs_per_s`] = load.rps;
    f[`${p}.cpu_us_per_msg.api`] = (api! * 1000) / load.ok;
    f[`${p}.cpu_us_per_msg.worker`] = (worker! * 1000) / load.ok;
    // Exports land every OTEL_BSP_SCHEDULE_DELAY (5 s) or 512 spans: counted after the stop flushes.
    await stack.api!.stop();
    await stack.worker!.stop();
    f[`${p}.exported_bytes_per_msg`] = ((await sink.count()).bytes - before.bytes) / load.ok;
  } finally {
    await stack.stop();
  }
}

const all: Figures[] = [];
const sink = await startSink();
try {
  for (let round = 1; round <= rounds; round++) {
    const f: Figures = {};
    console.error(`round ${round}/${rounds}: the seam alone`);
    await seamRound(f, sink);
    if (!values['seam-only'])
      for (const kind of queues) {
        // Alternate which goes first, so a drifting machine does not always favour one.
        const order: Array<'off' | 'on'> = round % 2 ? ['off', 'on'] : ['on', 'off'];
        for (const mode of order) {
          console.error(`round ${round}/${rounds}: intake on ${kind}, export ${mode}`);
          await e2e(kind, mode, sink, f);
        }
        for (const proc of ['api', 'worker'])
          f[`ratio.${kind}.on_vs_off.cpu.${proc}`] =
            f[`${kind}.on.cpu_us_per_msg.${proc}`]! / f[`${kind}.off.cpu_us_per_msg.${proc}`]!;
      }
    all.push(f);
  }
} finally {
  sink.child.kill();
}

const names = Object.keys(all[0]!);
const summary = Object.fromEntries(names.map((n) => [n, stat(all.map((f) => f[n]!))]));
const fmt = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(2));
console.log(`\n${rounds} round(s), ${seconds} s per load, ${connections} connections; medians (min–max)\n`);
console.log('| figure | median | min–max |\n|---|---|---|');
for (const n of names) {
  const s = summary[n]!;
  console.log(`| ${n} | ${fmt(s.median)} | ${fmt(s.min)}–${fmt(s.max)} |`);
}
writeFileSync(
  outFile,
  `${JSON.stringify({ options: { rounds, seconds, connections, queues, seamMessages }, rounds: all, summary }, null, 2)}\n`,
);
console.error(`\nJSON: ${outFile}`);
