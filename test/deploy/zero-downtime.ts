import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/**
 * Process-level zero-downtime check: an old and a new instance of an app behind a real nginx on
 * loopback, continuous load with long requests in flight, and the old instance replaced mid-load.
 *
 *   start old on port A → nginx (upstream A + B) → load → start new on B, wait ready
 *   → [mode "endpoint-removal": reload nginx without A, as an ingress controller does when the pod's
 *      endpoint goes away, then wait preStopMs, as the kubelet does while the preStop sleep runs]
 *   → SIGTERM old → keep the load going until old has exited and more requests were served
 *   → stop the load → report.
 *
 * mode "passive" keeps A in nginx's upstream: the old server must drain on its own (readiness off,
 * Connection: close, stop accepting) and nginx moves on after "connection refused", which it may
 * retry even for a POST because such a request was never sent.
 *
 * Everything is bounded in count and time, runs on 127.0.0.1 only, and every process is stopped by
 * its PID in t.after.
 */

export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  /** Extra request headers (e.g. Authorization for an app running in production mode). */
  headers?: Record<string, string>;
  /** Send the body in two halves this far apart (a slow client; nginx streams it, buffering is off). */
  slowBodyMs?: number;
}

export interface AppUnderTest {
  name: string;
  /** Spawns one instance listening on 127.0.0.1:port. `version` is "old" or "new". */
  start(port: number, version: 'old' | 'new'): ChildProcess;
  /**
   * Stops an instance as its platform does (default: SIGTERM to the process). A container is stopped
   * with `docker stop`; `child` is then the attached `docker run`, which exits with the container.
   */
  terminate?(child: ChildProcess): void;
  /** Readiness endpoint (200 when the instance may take traffic). */
  readyPath: string;
  /** The request a load worker sends next (worker index lets some workers send long requests). */
  request(worker: number, n: number): RequestSpec;
  /** A request that stays in flight about `ms` (slow handler or slow client), sent straight to the old instance. */
  longRequest(ms: number): RequestSpec;
  /** Returns a reason when a response is not the expected one. */
  check(status: number, body: string): string | undefined;
  /** Pause between two requests of one worker (keeps quick requests from saturating a small machine). */
  paceMs?: number;
}

export interface Options {
  mode: 'passive' | 'endpoint-removal';
  concurrency: number;
  /** Hard bounds for the whole load run. */
  maxRequests: number;
  maxDurationMs: number;
  /** Successful responses before the new instance is started, and after the old one exited. */
  warmupResponses: number;
  afterExitResponses: number;
  /** Instances get this long to become ready, the old one this long to exit after SIGTERM. */
  startTimeoutMs: number;
  drainTimeoutMs: number;
  /** endpoint-removal mode: time between the endpoint removal and SIGTERM (the preStop sleep). */
  preStopMs?: number;
}

export interface Report {
  app: string;
  mode: Options['mode'];
  sent: number;
  ok: number;
  failed: number;
  failures: string[];
  /**
   * Requests in flight when the old instance's removal began (the endpoint removal, or SIGTERM in
   * passive mode); how many of them completed OK; how many of them the old instance answered.
   */
  inFlightAtRemoval: number;
  inFlightAtRemovalOk: number;
  inFlightAtRemovalServedByOld: number;
  longestInFlightAtRemovalMs: number;
  /** How long after SIGTERM the old instance sent its last answer (it kept finishing requests). */
  oldLastAnswerAfterTermMs: number;
  servedByOld: number;
  servedByNew: number;
  /**
   * Long requests sent straight to the old instance just before its removal, still running at SIGTERM:
   * how many, how many completed OK, and how many ended after SIGTERM (i.e. the drain waited for them).
   */
  probes: number;
  probesOk: number;
  probesEndedAfterTerm: number;
  oldExit: { code: number | null; signal: string | null };
  /** SIGTERM → old process exit. */
  drainMs: number;
  durationMs: number;
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

interface Proc {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: string | null }>;
  output: () => string;
}

/** Tracks a child's exit and keeps the tail of its output for failure messages. */
function track(child: ChildProcess): Proc {
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, output: () => out };
}

function stopOnTestEnd(t: TestContext, p: Proc, signal: NodeJS.Signals = 'SIGKILL') {
  t.after(async () => {
    if (p.child.exitCode === null && p.child.signalCode === null && p.child.pid) {
      try {
        process.kill(p.child.pid, signal);
      } catch (err) {
        // Gone already: libuv reaped it and its 'exit' event has not run yet (seen in CI).
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
      await p.exited;
    }
  });
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls a readiness endpoint the way a kubelet probe would, until 200, the process dies, or the deadline. */
async function waitReady(port: number, path: string, p: Proc, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  let dead = false;
  void p.exited.then(() => {
    dead = true;
  });
  for (;;) {
    if (dead) throw new Error(`${what} exited before it was ready:\n${p.output()}`);
    const r = await get(port, path).catch(() => undefined);
    if (r?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms:\n${p.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** How the proxy reads request bodies (what differs between this test and the shipped Ingress). */
export interface NginxBodyOptions {
  /** nginx's proxy_request_buffering: read the whole body before passing it on (default: stream it). */
  requestBuffering?: boolean;
  /** nginx's client_max_body_size (default nginx's 1m). */
  clientMaxBodySize?: string;
}

/** A throw-away nginx: own prefix, config, pid file and logs under a temp dir; `daemon off` so its PID is ours. */
export class Nginx {
  private generation = 0;
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly proc: Proc,
    private readonly body: NginxBodyOptions,
  ) {}

  static async start(t: TestContext, upstreams: number[], body: NginxBodyOptions = {}): Promise<Nginx> {
    const dir = mkdtempSync(join(tmpdir(), 'zd-nginx-'));
    // As root, nginx workers run as "nobody" and must be able to reach the temp paths.
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'logs'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const nginx = new Nginx(dir, port, undefined as unknown as Proc, body);
    nginx.writeConfig(upstreams);
    const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc = track(child);
    // SIGQUIT is nginx's graceful stop; workers exit with the master.
    stopOnTestEnd(t, proc, 'SIGQUIT');
    Object.assign(nginx, { proc });
    await nginx.waitGeneration();
    return nginx;
  }

  private writeConfig(upstreams: number[]) {
    this.generation++;
    const d = this.dir;
    const servers = upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=1s;`).join('\n');
    writeFileSync(
      join(d, 'nginx.conf'),
      `daemon off;
worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/logs/error.log notice;
events { worker_connections 1024; }
http {
  access_log ${d}/logs/access.log;
  client_body_temp_path ${d}/client_body;
  proxy_temp_path ${d}/proxy;
  fastcgi_temp_path ${d}/fastcgi;
  uwsgi_temp_path ${d}/uwsgi;
  scgi_temp_path ${d}/scgi;
  upstream app {
${servers}
    # Pooled keep-alive connections, like ingress-nginx; idle ones are dropped before the app would
    # drop them (Go 75 s, intake 65 s), so the app never closes a connection nginx is about to reuse.
    keepalive 32;
    keepalive_timeout 30s;
  }
  server {
    listen 127.0.0.1:${this.port};
    location = /__generation { return 200 "${this.generation}"; }
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Only failures before a response; nginx never re-sends a POST that reached an upstream.
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
      # Stream request bodies so a slow client's request is in flight at the app, not only at nginx.
      proxy_request_buffering ${this.body.requestBuffering ? 'on' : 'off'};${this.body.clientMaxBodySize ? `\n      client_max_body_size ${this.body.clientMaxBodySize};` : ''}
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`,
    );
  }

  /** Waits until nginx serves the current config generation (after start or a reload). */
  private async waitGeneration() {
    const want = String(this.generation);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await get(this.port, '/__generation').catch(() => undefined);
      if (r?.body === want) return;
      if (this.proc.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(
          `nginx did not come up with config ${want}:\n${this.proc.output()}\n${this.errorLog()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * What an ingress controller does when endpoints change: a new upstream list. nginx OSS needs a
   * graceful reload for that; resolves once a new worker serves the new config and the old worker
   * has begun its graceful shutdown (it then accepts no new connection, but finishes its requests).
   */
  async reload(upstreams: number[]) {
    const shuttingDown = () => (this.errorLog(1 << 20).match(/gracefully shutting down/g) ?? []).length;
    const before = shuttingDown();
    this.writeConfig(upstreams);
    process.kill(this.proc.child.pid!, 'SIGHUP');
    await this.waitGeneration();
    const deadline = Date.now() + 10_000;
    while (shuttingDown() === before) {
      if (Date.now() > deadline) throw new Error(`the old nginx worker never shut down:\n${this.errorLog()}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  errorLog(tail = 4000): string {
    try {
      return readFileSync(join(this.dir, 'logs/error.log'), 'utf8').slice(-tail);
    } catch {
      return '';
    }
  }
}

interface Outcome {
  startedAt: number;
  endedAt?: number;
  upstream?: string;
  failure?: string;
}

/** Resolves when `predicate` holds, checked after every completed response; rejects at the deadline. */
class Progress {
  private waiters: Array<() => void> = [];
  /** Set when the load generator stopped (bound reached): nothing will make progress any more. */
  ended = false;
  notify() {
    for (const w of this.waiters.splice(0)) w();
  }
  async until(predicate: () => boolean, timeoutMs: number, what: string) {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (this.ended) throw new Error(`the load hit its request or time bound before ${what}`);
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

export async function runZeroDowntime(t: TestContext, app: AppUnderTest, opts: Options): Promise<Report> {
  const started = Date.now();
  const [portA, portB] = [await freePort(), await freePort()];

  const oldProc = track(app.start(portA, 'old'));
  stopOnTestEnd(t, oldProc);
  await waitReady(portA, app.readyPath, oldProc, opts.startTimeoutMs, `${app.name} (old)`);

  const nginx = await Nginx.start(t, [portA, portB]);

  // --- load ----------------------------------------------------------------------------------
  // An nginx reload has client-side races of its own: the old worker closes idle client keep-alive
  // connections and connections it accepted but has not read yet. They belong to nginx reloads, not
  // to the app under test (ingress-nginx applies endpoint changes without a reload), so when the run
  // reloads, clients use a connection per request and send nothing new while the reload happens
  // (requests already in flight carry on through it).
  const agent = new http.Agent({ keepAlive: opts.mode === 'passive', maxSockets: opts.concurrency });
  let paused: Promise<void> | undefined;
  t.after(() => agent.destroy());
  const outcomes: Outcome[] = [];
  const inFlight = new Set<Outcome>();
  const progress = new Progress();
  let stop = false;
  let ok = 0;

  const send = (worker: number, n: number) => {
    const o: Outcome = { startedAt: Date.now() };
    outcomes.push(o);
    inFlight.add(o);
    return request(nginx.port, app.request(worker, n), agent, o).then(() => {
      if (!o.failure) ok++;
      inFlight.delete(o);
      progress.notify();
    });
  };

  const request = (port: number, spec: RequestSpec, via: http.Agent | false, o: Outcome) =>
    new Promise<void>((resolve) => {
      const done = (failure?: string) => {
        o.endedAt = Date.now();
        o.failure = failure;
        resolve();
      };
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: spec.method,
          path: spec.path,
          agent: via,
          timeout: 15_000,
          headers: {
            ...(spec.body
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(spec.body) }
              : {}),
            ...spec.headers,
          },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => {
            o.upstream = String(res.headers['x-upstream'] ?? '');
            done(app.check(res.statusCode ?? 0, body));
          });
          res.on('error', (err) => done(`response error: ${err.message}`));
        },
      );
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', (err) => done(`request error: ${err.message}`));
      if (spec.body && spec.slowBodyMs) {
        const half = Math.floor(spec.body.length / 2);
        req.write(spec.body.slice(0, half));
        setTimeout(() => req.end(spec.body!.slice(half)), spec.slowBodyMs);
      } else {
        req.end(spec.body);
      }
    });

  const deadline = started + opts.maxDurationMs;
  const workers = Array.from({ length: opts.concurrency }, async (_, w) => {
    for (let n = 0; !stop && outcomes.length < opts.maxRequests && Date.now() < deadline; n++) {
      if (paused) await paused;
      await send(w, n);
      if (app.paceMs) await new Promise((resolve) => setTimeout(resolve, app.paceMs));
    }
  });
  const loadDone = Promise.all(workers).then(() => {
    progress.ended = true;
    progress.notify();
  });

  try {
    const phase = Math.min(opts.maxDurationMs, 60_000);
    await progress.until(
      () => ok >= opts.warmupResponses,
      phase,
      'warm-up responses through the old instance',
    );

    const newProc = track(app.start(portB, 'new'));
    stopOnTestEnd(t, newProc);
    await waitReady(portB, app.readyPath, newProc, opts.startTimeoutMs, `${app.name} (new)`);
    const servedBy = (port: number) => outcomes.filter((o) => o.upstream?.endsWith(`:${port}`)).length;
    const atNew = servedBy(portB);
    await progress.until(
      () => servedBy(portB) > atNew + 5,
      phase,
      'nginx to send traffic to the new instance',
    );

    const removalAt = Date.now();
    const atRemoval = [...inFlight];
    if (opts.mode === 'endpoint-removal') {
      let resume = () => {};
      paused = new Promise((resolve) => {
        resume = resolve;
      });
      try {
        await nginx.reload([portB]);
      } finally {
        paused = undefined;
        resume();
      }
    }
    // Long requests straight to the old instance, outlasting the preStop wait: they are in flight when
    // SIGTERM arrives, so the old instance must finish them while it drains. Started after nginx's
    // reload, whose duration varies with the machine's load: started before it, a slow reload let them
    // end before SIGTERM and the test could not tell a drain from none.
    const probeMs = (opts.preStopMs ?? 0) + 800;
    const probeOutcomes: Outcome[] = [1, 2, 3].map(() => ({ startedAt: Date.now() }));
    const probesDone = Promise.all(
      probeOutcomes.map((o) => request(portA, app.longRequest(probeMs), false, o)),
    );
    await new Promise((resolve) => setTimeout(resolve, 100)); // let them reach the server first
    // The kubelet's preStop sleep: the old pod keeps running, untouched, while the change propagates.
    if (opts.mode === 'endpoint-removal')
      await new Promise((resolve) => setTimeout(resolve, opts.preStopMs ?? 0));
    const termAt = Date.now();
    if (app.terminate) app.terminate(oldProc.child);
    else process.kill(oldProc.child.pid!, 'SIGTERM');
    const exitTimer = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`old instance still running ${opts.drainTimeoutMs} ms after SIGTERM`)),
        opts.drainTimeoutMs,
      ).unref(),
    );
    const oldExit = await Promise.race([oldProc.exited, exitTimer]);
    const drainMs = Date.now() - termAt;
    await probesDone;
    const okAtExit = ok;
    await progress.until(
      () => ok >= okAtExit + opts.afterExitResponses,
      phase,
      'responses after the old instance exited',
    );
    stop = true;
    await loadDone;

    const failures = outcomes.filter((o) => o.failure);
    const report: Report = {
      app: app.name,
      mode: opts.mode,
      sent: outcomes.length,
      ok,
      failed: failures.length,
      failures: failures
        .slice(0, 10)
        .map((o) => `${o.failure} (t+${o.startedAt - started} ms, ${o.upstream || 'no upstream'})`),
      inFlightAtRemoval: atRemoval.length,
      inFlightAtRemovalOk: atRemoval.filter((o) => o.endedAt && !o.failure).length,
      inFlightAtRemovalServedByOld: atRemoval.filter((o) => o.upstream?.endsWith(`:${portA}`)).length,
      longestInFlightAtRemovalMs: Math.max(
        0,
        ...atRemoval.map((o) => (o.endedAt ?? removalAt) - o.startedAt),
      ),
      oldLastAnswerAfterTermMs: Math.max(
        0,
        ...outcomes
          .filter((o) => o.upstream?.endsWith(`:${portA}`))
          .map((o) => (o.endedAt ?? termAt) - termAt),
      ),
      servedByOld: servedBy(portA),
      servedByNew: servedBy(portB),
      probes: probeOutcomes.length,
      probesOk: probeOutcomes.filter((o) => !o.failure).length,
      probesEndedAfterTerm: probeOutcomes.filter((o) => (o.endedAt ?? 0) > termAt).length,
      oldExit,
      drainMs,
      durationMs: Date.now() - started,
    };
    t.diagnostic(`${app.name} zero-downtime (${opts.mode}): ${JSON.stringify(report)}`);
    if (report.failed > 0)
      t.diagnostic(`nginx error log:\n${nginx.errorLog()}\nold instance output:\n${oldProc.output()}`);
    return report;
  } finally {
    stop = true;
    await loadDone;
  }
}

/** The assertions every zero-downtime run must satisfy. */
export function assertZeroDowntime(r: Report) {
  assert.deepEqual(r.failures, [], `${r.failed} of ${r.sent} requests failed`);
  assert.equal(r.failed, 0);
  // Fast handlers (intake answers in ~1 ms) may have no load request in flight at that instant; the
  // probes are long requests held open on the old instance across SIGTERM, so either proves the drain.
  assert.ok(
    r.inFlightAtRemoval + r.probes > 0,
    'no request was in flight when the removal began: the run proved nothing',
  );
  assert.equal(
    r.inFlightAtRemovalOk,
    r.inFlightAtRemoval,
    'a request in flight at the removal did not complete',
  );
  assert.equal(r.probesOk, r.probes, 'a long request in flight on the old instance at SIGTERM failed');
  assert.equal(
    r.probesEndedAfterTerm,
    r.probes,
    'the probes ended before SIGTERM: the drain was not exercised',
  );
  assert.ok(r.servedByNew > 0 && r.servedByOld > 0, 'both instances must have served traffic');
  assert.deepEqual(r.oldExit, { code: 0, signal: null }, 'the old instance must exit 0 after draining');
}
