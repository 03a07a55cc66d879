import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** What one load run sends: POSTs of one body, as fast as it can or at `rate` requests/s. */
export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  bodyBase64: string;
  connections: number;
  seconds: number;
  rate?: number;
}

export interface LoadResult {
  requests: number;
  /** 2xx answers (each a durable ack of every message in the body). */
  ok: number;
  non2xx: number;
  errors: number;
  seconds: number;
  /** 2xx answers per second. */
  rps: number;
  /** Latency percentiles, ms. */
  p50: number;
  p99: number;
}

const LOADGEN = fileURLToPath(new URL('./loadgen.ts', import.meta.url));

/** Runs autocannon in a child process and returns its figures. */
export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', LOADGEN], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end(JSON.stringify(spec));
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`load generator exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out) as LoadResult);
      } catch {
        reject(new Error(`load generator printed no result: ${out} ${err}`));
      }
    });
  });
}
