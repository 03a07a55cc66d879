// The cost of intake's log sink (src/ops/logger.ts: bounded buffer, drop accounting) against pino's own
// asynchronous destination, side by side in one process, alternating rounds: the synchronous cost of
// log.info per line. Lines go out in batches of 2,000 (~0.4 MB, inside the 4 MiB buffer), each batch
// flushed before the next, so neither drops. Run with stdout on a pipe; the result goes to stderr:
//   node --import tsx scripts/bench-log.ts | cat > /dev/null
import { pino } from 'pino';
import { createLogger, droppedLogLines } from '../src/ops/logger.ts';

const BATCH = 2000;
const BATCHES = 50;
const line = {
  reqId: '7b0c6c1e-1f4e-4a51-9d6f-2f0f3a0b8e55',
  method: 'POST',
  route: '/v1/messages',
  status: 202,
  ms: 3.4,
  client: 'acme',
  bytesIn: 143,
};
const opts = { base: { service: 'intake' }, timestamp: pino.stdTimeFunctions.isoTime };
const loggers = {
  pino: pino(opts, pino.destination({ dest: 1, sync: false })),
  intake: createLogger({ level: 'info' }),
};
const rates: Record<string, number[]> = { pino: [], intake: [] };
for (let round = 0; round < 15; round++) {
  for (const name of ['pino', 'intake'] as const) {
    const log = loggers[name];
    let ns = 0n;
    for (let b = 0; b < BATCHES; b++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) log.info(line, 'request');
      ns += process.hrtime.bigint() - t0;
      await new Promise<void>((r) => log.flush(() => r()));
    }
    rates[name]!.push((BATCH * BATCHES) / (Number(ns) / 1e9));
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const [b, a] = [median(rates.pino!), median(rates.intake!)];
process.stderr.write(
  `log.info lines/s, median of 15 rounds of ${BATCH * BATCHES}: pino.destination ${b.toFixed(0)}, intake sink ${a.toFixed(0)}, ratio ${(a / b).toFixed(3)}; dropped by the sink: ${droppedLogLines()}\n`,
);
process.exit(0);
