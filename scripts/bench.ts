/**
 * Cost per message, stage by stage (docs/capacity-plan.md). One run measures, side by side, R rounds of:
 *   - raw node:http answering 202 (the ceiling) and its CPU per request;
 *   - intake (`api` + `worker` processes, durable ack) on the Postgres queue and on NATS JetStream, with
 *     single-message POSTs, JSON batches of 100 and gzipped NDJSON of 100 lines: messages/s, latency,
 *     and CPU per message of every process: API, worker, nats-server (a private one), PostgreSQL (the
 *     backends of the bench's own database);
 *   - HTTP p50/p99, queue→stored lag p50/p99 and RSS at half the measured single-message maximum;
 *     time to ready of each process;
 *   - the worker's rows/s draining a pre-filled queue vs raw COPY of the same rows and one INSERT per row.
 * Load comes from a child process: autocannon as fast as it can, evenly paced requests for the
 * half-maximum rate (bench/loadgen.ts says why not autocannon there). PostgreSQL's CPU leaves out the
 * bench's own queries; completion is read from the worker's counter, never by polling count(*).
 * Everything shares this machine's cores, so req/s is noisy; CPU per message is the stable figure.
 * Prints medians with min–max, writes JSON to --out.
 *
 *   npm run bench -- [--rounds 3] [--seconds 8] [--connections 100] [--prefill 50000] [--out FILE]
 *   npm run bench -- --quick          (CI: 1 round, 2 s each, small pre-fill; under 2 minutes)
 *   npm run bench -- --queues pg      (only one queue)
 *   npm run bench -- --bulk           (with --quick: also 10,000-line NDJSON, plain and gzipped, and
 *                                      1,000-item JSON batches; a full run always has them)
 *   npm run bench -- --api-workers 2  (also single POSTs on the Postgres queue with INTAKE_API_WORKERS=2;
 *                                      1 skips that run)
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ADMIN_URL } from '../harness/db.ts';
import { rawHttp, storeBaselines } from './bench/baselines.ts';
import { type LoadResult, type LoadSpec, runLoad } from './bench/load.ts';
import { CpuMeter, holdsListener, PgBackendCpu, rssBytes, withChildren } from './bench/proc.ts';
import { type QueueKind, Stack } from './bench/stack.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    connections: { type: 'string' },
    prefill: { type: 'string' },
    queues: { type: 'string' },
    'api-workers': { type: 'string' },
    out: { type: 'string' },
    bulk: { type: 'boolean' },
  },
});
const quick = values.quick!;
const rounds = Number(values.rounds ?? (quick ? 1 : 3));
const seconds = Number(values.seconds ?? (quick ? 2 : 8));
const connections = Number(values.connections ?? (quick ? 20 : 100));
const prefill = Number(values.prefill ?? (quick ? 4000 : 50_000));
const insertRows = Math.min(prefill, quick ? 500 : 3000);
const queues = (values.queues ?? 'pg,nats').split(',') as QueueKind[];
const apiWorkers = Number(values['api-workers'] ?? 2);
const outFile = values.out ?? 'bench-results.json';
/** Bulk requests (10,000 NDJSON lines, 1,000-item JSON): on by default, off in --quick (--bulk forces). */
const bulk = values.bulk ?? !quick;

const one = {
  ts: '1530228282',
  sender: 'testy-test-service',
  message: { foo: 'bar', baz: 'bang' },
  'sent-from-ip': '1.2.3.4',
  priority: 2,
};
const singleBody = JSON.stringify(one);
const BATCH = 100;
const batchBody = JSON.stringify({ messages: Array.from({ length: BATCH }, () => one) });
const ndjsonGz = gzipSync(`${Array.from({ length: BATCH }, () => singleBody).join('\n')}\n`);
/**
 * Bulk: 10,000 messages a request as NDJSON (plain and gzipped) next to the JSON batch's 1,000 (its
 * limit), all of one small message so 10,000 lines fit the 1 MiB body limit.
 */
const small = JSON.stringify({ ts: 1530228282, sender: 'bulk', message: { n: 1 } });
const BULK = 10_000;
const ndjson10k = Buffer.from(`${Array.from({ length: BULK }, () => small).join('\n')}\n`);
const json1000 = Buffer.from(
  JSON.stringify({ messages: Array.from({ length: 1000 }, () => JSON.parse(small)) }),
);

type Figures = Record<string, number>;

/** Bodies of one kind of request and how many messages each carries. */
interface Shape {
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  messages: number;
  connections: number;
}
const shapes: Record<
  'single' | 'batch100' | 'ndjson_gz100' | 'bulk_json1000' | 'bulk_ndjson10k' | 'bulk_ndjson_gz10k',
  Shape
> = {
  single: {
    path: '/v1/messages',
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(singleBody),
    messages: 1,
    connections,
  },
  batch100: {
    path: '/v1/messages/batch',
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(batchBody),
    messages: BATCH,
    connections: Math.max(4, connections >> 2),
  },
  ndjson_gz100: {
    path: '/v1/messages/batch',
    headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
    body: ndjsonGz,
    messages: BATCH,
    connections: Math.max(4, connections >> 2),
  },
  bulk_json1000: {
    path: '/v1/messages/batch',
    headers: { 'content-type': 'application/json' },
    body: json1000,
    messages: 1000,
    connections: 4,
  },
  bulk_ndjson10k: {
    path: '/v1/messages/batch',
    headers: { 'content-type': 'application/x-ndjson' },
    body: ndjson10k,
    messages: BULK,
    connections: 2,
  },
  bulk_ndjson_gz10k: {
    path: '/v1/messages/batch',
    headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
    body: gzipSync(ndjson10k),
    messages: BULK,
    connections: 2,
  },
};

interface Phase {
  load: LoadResult;
  msgsPerSec: number;
  /** µs of CPU per message stored, per process, from the start of the load until every message is stored. */
  cpu: { api: number; worker: number; nats: number; pg: number };
  rss: { api: number; worker: number };
  lag?: { p50: number; p99: number };
}

/** Loads the stack with one shape, waits until every acknowledged message is stored, and accounts CPU. */
async function phase(
  stack: Stack,
  shape: Shape,
  opts: { rate?: number; lag?: boolean } = {},
): Promise<Phase> {
  const before = await stack.stored();
  const workerBefore = await stack.workerStored();
  const pgCpu = new PgBackendCpu(ADMIN_URL, stack.db.name);
  // The API's CPU includes its cluster workers (INTAKE_API_WORKERS) when it has any.
  const apiPids = withChildren(stack.api!.child.pid!);
  const pids = [stack.worker!.child.pid!, stack.natsPid ?? 0, ...apiPids];
  const cpu = new CpuMeter(pids);
  await pgCpu.start();
  const rss = { api: 0, worker: 0 };
  const sampler = setInterval(() => {
    rss.api = Math.max(
      rss.api,
      apiPids.reduce((sum, pid) => sum + (rssBytes(pid) ?? 0), 0),
    );
    rss.worker = Math.max(rss.worker, rssBytes(pids[0]!) ?? 0);
  }, 250);
  cpu.start();
  const from = new Date();
  const spec: LoadSpec = {
    url: `${stack.api!.url}${shape.path}`,
    headers: shape.headers,
    bodyBase64: shape.body.toString('base64'),
    connections: shape.connections,
    seconds,
    ...(opts.rate ? { rate: Math.max(1, Math.round(opts.rate)) } : {}),
  };
  const load = await runLoad(spec);
  const to = new Date();
  clearInterval(sampler);
  const messages = load.ok * shape.messages;
  await stack.waitStored(workerBefore + messages, before + messages);
  const [worker, nats, ...api] = cpu.read();
  const pg = await pgCpu.stop();
  const per = (ms: number) => (ms * 1000) / messages;
  return {
    load,
    msgsPerSec: messages / load.seconds,
    cpu: { api: per(api.reduce((a, b) => a + b, 0)), worker: per(worker!), nats: per(nats!), pg: per(pg) },
    rss,
    lag: opts.lag ? await stack.lag(from, new Date(to.getTime() + 1)) : undefined,
  };
}

function record(f: Figures, prefix: string, p: Phase): void {
  f[`${prefix}.msgs_per_s`] = p.msgsPerSec;
  f[`${prefix}.http_p50_ms`] = p.load.p50;
  f[`${prefix}.http_p99_ms`] = p.load.p99;
  f[`${prefix}.cpu_us_per_msg.api`] = p.cpu.api;
  f[`${prefix}.cpu_us_per_msg.worker`] = p.cpu.worker;
  if (prefix.startsWith('nats')) f[`${prefix}.cpu_us_per_msg.nats`] = p.cpu.nats;
  f[`${prefix}.cpu_us_per_msg.postgres`] = p.cpu.pg;
  f[`${prefix}.cpu_us_per_msg.total`] = p.cpu.api + p.cpu.worker + p.cpu.nats + p.cpu.pg;
  if (p.load.non2xx + p.load.errors > 0)
    console.error(`${prefix}: ${p.load.non2xx} non-2xx answers, ${p.load.errors} errors`);
}

/**
 * Single POSTs to warm JIT, connection pools and the first partitions; not measured. Returns once the
 * worker (started just before, its counter at 0, the table empty) has stored them all, so that the
 * first phase starts from a quiet pipeline and counts only its own messages.
 */
async function warmUp(stack: Stack): Promise<void> {
  const r = await runLoad({
    url: `${stack.api!.url}${shapes.single.path}`,
    headers: shapes.single.headers,
    bodyBase64: shapes.single.body.toString('base64'),
    connections,
    seconds: quick ? 1 : 3,
  });
  await stack.waitStored(r.ok, r.ok);
}

async function queueRound(kind: QueueKind, f: Figures): Promise<void> {
  const stack = await Stack.create(kind);
  try {
    await stack.startApi();
    await stack.startWorker();
    f[`${kind}.ready_ms.api`] = stack.apiReadyMs;
    f[`${kind}.ready_ms.worker`] = stack.workerReadyMs;
    // Warm-up (JIT, connection pools, first partitions), not measured.
    await warmUp(stack);
    const single = await phase(stack, shapes.single);
    record(f, `${kind}.single`, single);
    // Right after the single maximum it is measured from, before the batch and bulk phases push
    // hundreds of thousands of messages through: on the Postgres queue those leave the queue table
    // full of dead rows, and the autovacuum that follows would be charged to this phase.
    const half = await phase(stack, shapes.single, { rate: single.load.rps / 2, lag: true });
    record(f, `${kind}.half_max`, half);
    f[`${kind}.half_max.lag_p50_ms`] = half.lag!.p50;
    f[`${kind}.half_max.lag_p99_ms`] = half.lag!.p99;
    f[`${kind}.half_max.rss_mb.api`] = half.rss.api / 2 ** 20;
    f[`${kind}.half_max.rss_mb.worker`] = half.rss.worker / 2 ** 20;
    record(f, `${kind}.batch100`, await phase(stack, shapes.batch100));
    record(f, `${kind}.ndjson_gz100`, await phase(stack, shapes.ndjson_gz100));
    if (bulk)
      for (const name of ['bulk_json1000', 'bulk_ndjson10k', 'bulk_ndjson_gz10k'] as const)
        record(f, `${kind}.${name}`, await phase(stack, shapes[name]));
    console.error(`${kind}: worker draining a pre-filled queue`);
    await drain(stack, f);
  } finally {
    await stack.stop();
  }
}

/** Single POSTs with INTAKE_API_WORKERS processes serving the API (Postgres queue). */
async function apiWorkersRound(f: Figures): Promise<void> {
  const stack = await Stack.create('pg', { INTAKE_API_WORKERS: String(apiWorkers) });
  try {
    await stack.startApi();
    await stack.startWorker();
    // Every API process listening (readiness answers as soon as the first one is), then warm-up.
    const listening = () => {
      const kids = withChildren(stack.api!.child.pid!).slice(1);
      return kids.length === apiWorkers && kids.every((pid) => holdsListener(pid, stack.api!.port));
    };
    const deadline = Date.now() + 60_000;
    while (!listening()) {
      if (Date.now() > deadline) throw new Error(`not all ${apiWorkers} API processes listen after 60 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await warmUp(stack);
    record(f, `pg.api_workers_${apiWorkers}.single`, await phase(stack, shapes.single));
  } finally {
    await stack.stop();
  }
}

/**
 * The worker alone, on the same stack after the loaded phases: the worker is stopped, the API fills the
 * queue, then a new worker is started and drains it.
 */
async function drain(stack: Stack, f: Figures): Promise<void> {
  const kind = stack.kind;
  await stack.worker!.stop();
  const already = await stack.stored();
  {
    const per = 1000;
    const body = JSON.stringify({ messages: Array.from({ length: per }, () => one) });
    let sent = 0;
    const post = async () => {
      while (sent < prefill) {
        sent += per;
        const r = await fetch(`${stack.api!.url}/v1/messages/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        if (r.status !== 202) throw new Error(`pre-fill answered ${r.status}: ${await r.text()}`);
      }
    };
    await Promise.all([post(), post(), post(), post()]);
    const total = already + sent;
    const pgCpu = new PgBackendCpu(ADMIN_URL, stack.db.name);
    await pgCpu.start();
    const started = await stack.dbNow();
    await stack.startWorker();
    // The worker's CPU from readiness on (start-up is reported as time to ready), per row written since.
    const cpu = new CpuMeter([stack.worker!.child.pid!]);
    cpu.start();
    const ready = await stack.dbNow();
    await stack.waitStored(sent, total);
    const workerMs = cpu.read()[0]!;
    const pgMs = await pgCpu.stop();
    const drained = await stack.writtenSince(started);
    const afterReady = await stack.writtenSince(ready);
    f[`${kind}.drain.rows_per_s`] = drained.rowsPerSec;
    f[`${kind}.drain.cpu_us_per_row.worker`] = (workerMs * 1000) / afterReady.rows;
    f[`${kind}.drain.cpu_us_per_row.postgres`] = (pgMs * 1000) / drained.rows;
  }
}

const all: Figures[] = [];
const started = Date.now();
for (let round = 1; round <= rounds; round++) {
  const f: Figures = {};
  console.error(`round ${round}/${rounds}: raw node:http`);
  const raw = await rawHttp(singleBody, connections, seconds);
  f['raw.req_per_s'] = raw.rps;
  f['raw.http_p50_ms'] = raw.p50;
  f['raw.http_p99_ms'] = raw.p99;
  f['raw.cpu_us_per_req'] = raw.cpuUsPerRequest;
  for (const kind of queues) {
    console.error(`round ${round}/${rounds}: intake on ${kind}`);
    await queueRound(kind, f);
  }
  if (apiWorkers > 1 && queues.includes('pg')) {
    console.error(`round ${round}/${rounds}: intake on pg, INTAKE_API_WORKERS=${apiWorkers}`);
    await apiWorkersRound(f);
    f[`ratio.pg.api_workers_${apiWorkers}_vs_1`] =
      f[`pg.api_workers_${apiWorkers}.single.msgs_per_s`]! / f['pg.single.msgs_per_s']!;
  }
  console.error(`round ${round}/${rounds}: store baselines`);
  const b = await storeBaselines(prefill, insertRows);
  f['store.copy.rows_per_s'] = b.copyRowsPerSec;
  f['store.insert_per_row.rows_per_s'] = b.insertRowsPerSec;
  for (const kind of queues) {
    f[`ratio.${kind}.e2e_vs_raw`] = f[`${kind}.single.msgs_per_s`]! / f['raw.req_per_s'];
    f[`ratio.${kind}.api_cpu_vs_raw`] = f[`${kind}.single.cpu_us_per_msg.api`]! / f['raw.cpu_us_per_req'];
    f[`ratio.${kind}.batch100_vs_single`] =
      f[`${kind}.batch100.msgs_per_s`]! / f[`${kind}.single.msgs_per_s`]!;
    f[`ratio.${kind}.worker_vs_copy`] = f[`${kind}.drain.rows_per_s`]! / b.copyRowsPerSec;
    f[`ratio.${kind}.worker_vs_insert_per_row`] = f[`${kind}.drain.rows_per_s`]! / b.insertRowsPerSec;
    if (bulk) {
      f[`ratio.${kind}.ndjson10k_vs_json1000`] =
        f[`${kind}.bulk_ndjson10k.msgs_per_s`]! / f[`${kind}.bulk_json1000.msgs_per_s`]!;
      f[`ratio.${kind}.ndjson_gz10k_vs_ndjson10k`] =
        f[`${kind}.bulk_ndjson_gz10k.msgs_per_s`]! / f[`${kind}.bulk_ndjson10k.msgs_per_s`]!;
    }
  }
  all.push(f);
}

const stat = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
};
const names = Object.keys(all[0]!);
const summary = Object.fromEntries(names.map((n) => [n, stat(all.map((f) => f[n]!))]));

const targets = queues.flatMap((k) => [
  {
    target: `${k}: API+worker end to end ≥ 0.5 of raw node:http`,
    figure: `ratio.${k}.e2e_vs_raw`,
    ok: (v: number) => v >= 0.5,
  },
  {
    target: `${k}: API CPU per message ≤ 2× raw's per request`,
    figure: `ratio.${k}.api_cpu_vs_raw`,
    ok: (v: number) => v <= 2,
  },
  {
    target: `${k}: worker ≥ 0.5 of raw COPY rows/s`,
    figure: `ratio.${k}.worker_vs_copy`,
    ok: (v: number) => v >= 0.5,
  },
  {
    target: `${k}: worker ≥ 20× one INSERT per row`,
    figure: `ratio.${k}.worker_vs_insert_per_row`,
    ok: (v: number) => v >= 20,
  },
  {
    target: `${k}: batch of 100 ≥ 5× single messages/s`,
    figure: `ratio.${k}.batch100_vs_single`,
    ok: (v: number) => v >= 5,
  },
  {
    target: `${k}: HTTP p99 ≤ 20 ms at half max`,
    figure: `${k}.half_max.http_p99_ms`,
    ok: (v: number) => v <= 20,
  },
  {
    target: `${k}: queue→stored lag p99 < 1 s at half max`,
    figure: `${k}.half_max.lag_p99_ms`,
    ok: (v: number) => v < 1000,
  },
]);
const targetRows = targets.map((t) => ({
  target: t.target,
  figure: t.figure,
  median: summary[t.figure]!.median,
  reached: t.ok(summary[t.figure]!.median),
}));

const fmt = (v: number) =>
  !Number.isFinite(v) ? String(v) : Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(2);
console.log(
  `\n${rounds} round(s), ${seconds} s per load, ${connections} connections (batches: ${shapes.batch100.connections}), ` +
    `pre-fill ${prefill}; medians (min–max)\n`,
);
console.log('| figure | median | min–max |\n|---|---|---|');
for (const n of names) {
  const s = summary[n]!;
  console.log(`| ${n} | ${fmt(s.median)} | ${fmt(s.min)}–${fmt(s.max)} |`);
}
console.log('\n| target | figure | median | reached |\n|---|---|---|---|');
for (const t of targetRows)
  console.log(`| ${t.target} | ${t.figure} | ${fmt(t.median)} | ${t.reached ? 'yes' : 'no'} |`);
writeFileSync(
  outFile,
  `${JSON.stringify(
    {
      options: { quick, rounds, seconds, connections, prefill, insertRows, queues, apiWorkers },
      seconds_total: (Date.now() - started) / 1000,
      rounds: all,
      summary,
      targets: targetRows,
    },
    null,
    2,
  )}\n`,
);
console.error(`\nJSON: ${outFile}`);
