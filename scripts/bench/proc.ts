import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import pg from 'pg';

/**
 * CPU time and memory of processes, read from /proc (Linux): utime + stime of /proc/<pid>/stat, in
 * clock ticks of 10 ms (CLK_TCK 100 on Linux), and VmRSS of /proc/<pid>/status.
 */
const TICK_MS = 10;

/** CPU time (user + system) a process has used so far, in ms; undefined once it is gone. */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** Resident set size in bytes; undefined once the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The process and its direct children (the API's cluster workers). */
export function withChildren(pid: number): number[] {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return [pid, ...(kids ? kids.split(/\s+/).map(Number) : [])];
  } catch {
    return [pid];
  }
}

/**
 * Whether the process holds the socket listening on this TCP port (an API cluster worker that has
 * received the shared listening socket), from /proc/net/tcp and the process's file descriptors.
 */
export function holdsListener(pid: number, port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A') inodes.add(f[9]!);
  }
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        return m !== null && inodes.has(m[1]!);
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** CPU used by a fixed set of processes between `start()` and `stop()`. */
export class CpuMeter {
  private base = new Map<number, number>();
  constructor(private readonly pids: number[]) {}
  start(): void {
    for (const pid of this.pids) this.base.set(pid, cpuMs(pid) ?? 0);
  }
  /** ms of CPU per pid since start(). */
  read(): number[] {
    return this.pids.map((pid) => (cpuMs(pid) ?? this.base.get(pid)!) - this.base.get(pid)!);
  }
}

/**
 * CPU of the PostgreSQL backends serving one database, found in pg_stat_activity (polled, so that
 * connections opened during the measurement count too, from zero). Polls from the admin database so
 * its own backend is not counted. PostgreSQL must run on this machine (same /proc).
 */
export class PgBackendCpu {
  private first = new Map<number, number>();
  private last = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private client: pg.Client;
  private polling: Promise<void> = Promise.resolve();

  constructor(
    adminUrl: string,
    private readonly database: string,
  ) {
    this.client = new pg.Client({ connectionString: adminUrl, application_name: 'bench-cpu' });
  }

  async start(): Promise<void> {
    await this.client.connect();
    await this.poll(true);
    this.timer = setInterval(() => {
      this.polling = this.polling.then(() => this.poll(false)).catch(() => {});
    }, 250);
  }

  private async poll(initial: boolean): Promise<void> {
    // Not the bench's own connection (application_name 'bench': row counts, lag queries) nor the
    // parallel workers its scans start (leader_pid), only what the pipeline costs PostgreSQL.
    const r = await this.client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
       WHERE datname = $1 AND application_name IS DISTINCT FROM 'bench'
         AND (leader_pid IS NULL OR leader_pid NOT IN (
           SELECT pid FROM pg_stat_activity WHERE application_name = 'bench'))`,
      [this.database],
    );
    for (const { pid } of r.rows) {
      const now = cpuMs(pid);
      if (now === undefined) continue;
      if (!this.first.has(pid)) this.first.set(pid, initial ? now : 0);
      this.last.set(pid, now);
    }
  }

  /** Total ms of CPU of the database's backends since start(); stops polling. */
  async stop(): Promise<number> {
    clearInterval(this.timer);
    await this.polling;
    await this.poll(false).catch(() => {});
    await this.client.end();
    let sum = 0;
    for (const [pid, last] of this.last) sum += last - this.first.get(pid)!;
    return sum;
  }
}
