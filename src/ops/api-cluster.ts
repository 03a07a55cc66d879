import cluster, { type Worker } from 'node:cluster';
import { answerRateRequest, RATE_REQUEST, type RateRequest } from '../auth/cluster-buckets.ts';
import { TokenBuckets } from '../auth/rate-limit.ts';
import type { Logger } from './logger.ts';

/**
 * `INTAKE_API_WORKERS=N` for `intake api`: N processes serve the same port (node:cluster with
 * SCHED_NONE: every process accepts on the shared socket and the kernel spreads connections, so the
 * primary handles no traffic). The primary only supervises:
 *   - signals: its k-th SIGTERM/SIGINT becomes each worker's k-th (sent over IPC, so a Ctrl-C that
 *     already reached the whole process group is not counted twice): the first drains, the second
 *     abandons the drain, as for a single process (src/ops/process-exit.ts);
 *   - a worker that exits on its own takes the others down (SIGTERM), and the primary exits 1, so the
 *     pod restarts whole rather than serving with fewer processes than configured;
 *   - it exits with the highest worker exit code once all are gone;
 *   - it holds the pod's rate-limit token buckets, which the API processes take from over IPC, so a
 *     key's rate holds per pod, not per process (auth/cluster-buckets.ts).
 * /metrics and /readyz are answered by whichever process takes the connection.
 */
const MESSAGE = 'intake:signal';
const FOLLOW = 'intake:follow';

export function runApiCluster(workers: number, log: Logger): Promise<number> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  return new Promise((resolve) => {
    const live = new Set<Worker>();
    let signals = 0;
    let failed = false;
    let last: NodeJS.Signals = 'SIGTERM';
    let code = 0;
    // Workers that can act on a signal (their handlers are installed); one still starting asks for the
    // signals so far when it gets there.
    const following = new Set<Worker>();
    // The pod's token buckets: every API process takes from these (auth/cluster-buckets.ts).
    const buckets = new TokenBuckets();
    const tell = (w: Worker) => {
      if (signals > 0 && w.isConnected()) w.send({ type: MESSAGE, signal: last, n: signals });
    };
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      last = signal;
      if (signals >= 3) {
        for (const w of live) w.process.kill('SIGKILL');
        return;
      }
      for (const w of following) tell(w);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    for (let i = 0; i < workers; i++) {
      const w = cluster.fork();
      live.add(w);
      w.on('message', (m: { type?: string }) => {
        if (m?.type === RATE_REQUEST) {
          if (w.isConnected()) w.send(answerRateRequest(buckets, m as RateRequest));
          return;
        }
        if (m?.type !== FOLLOW) return;
        following.add(w);
        tell(w);
      });
      w.on('exit', (exitCode, signal) => {
        live.delete(w);
        following.delete(w);
        code = Math.max(code, exitCode ?? 1);
        if (signals === 0 && !failed) {
          failed = true;
          log.error(
            { pid: w.process.pid, exitCode, signal },
            'API worker process exited; stopping the others',
          );
          for (const other of live) other.process.kill('SIGTERM');
        }
        if (live.size === 0) resolve(failed ? Math.max(code, 1) : code);
      });
    }
    log.info({ workers }, 'API processes started');
  });
}

/**
 * In a cluster worker, once its own signal handling (handleSignals) is installed: asks the primary for
 * its signals and replays them, the k-th as the k-th this process sees, so one that already arrived
 * directly (Ctrl-C reaches the whole process group) is not counted twice. A signal the primary got while
 * this process was still starting is replayed now.
 */
export function followPrimarySignals(): void {
  if (!cluster.isWorker) return;
  let seen = 0;
  const count = () => {
    seen++;
  };
  process.on('SIGTERM', count);
  process.on('SIGINT', count);
  process.on('message', (m: { type?: string; signal?: NodeJS.Signals; n?: number }) => {
    if (m?.type !== MESSAGE || !m.signal || !m.n) return;
    while (seen < m.n) process.emit(m.signal, m.signal);
  });
  process.send?.({ type: FOLLOW });
}
