/**
 * What the connection handling of src/http/connections.ts (refusals that reach the client, Expect:
 * 100-continue, precise timeouts) costs an accepted request, side by side in one run: the same
 * Fastify app answering 202 to a small JSON POST, without and with registerConnectionHandling, each
 * in its own process, measured in alternating rounds (ratios, not absolute promises; autocannon
 * shares the cores with what it measures).
 *
 *   node --import tsx scripts/bench-connections.ts [--seconds 5] [--rounds 3] [--connections 100]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { waitFor } from '../harness/db.ts';
import { freePort } from '../harness/intake-process.ts';
import { registerConnectionHandling } from '../src/http/connections.ts';
import { checkingIntervalMs } from '../src/http/server-timeouts.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    connections: { type: 'string' },
    serve: { type: 'string' },
    port: { type: 'string' },
  },
});

const timeouts = {
  headersTimeoutMs: 5000,
  requestTimeoutMs: 10_000,
  lingeringTimeMs: 30_000,
  lingeringTimeoutMs: 5000,
};

if (values.serve) {
  // Child: one server, with or without the connection handling.
  const app = Fastify({ http: { connectionsCheckingInterval: checkingIntervalMs(timeouts) } });
  if (values.serve === 'with') registerConnectionHandling(app, timeouts);
  app.post('/v1/messages', async (_req, reply) => {
    reply.code(202);
    return { id: '0', status: 'accepted' };
  });
  await app.listen({ port: Number(values.port), host: '127.0.0.1' });
} else {
  const seconds = Number(values.seconds ?? 5);
  const rounds = Number(values.rounds ?? 3);
  const connections = Number(values.connections ?? 100);
  const body = JSON.stringify({ ts: '1530228282', sender: 'testy-test-service', message: { foo: 'bar' } });
  const servers: Record<string, { url: string; kill: () => void; rps: number[]; p99: number[] }> = {};
  for (const mode of ['without', 'with']) {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', mode, '--port', String(port)],
      { stdio: 'inherit' },
    );
    const url = `http://127.0.0.1:${port}/v1/messages`;
    await waitFor(
      `${mode} server`,
      async () => (await fetch(url, { method: 'POST' }).catch(() => undefined))?.ok,
      30_000,
    );
    servers[mode] = { url, kill: () => child.kill('SIGTERM'), rps: [], p99: [] };
  }
  try {
    for (let r = 0; r < rounds; r++) {
      for (const s of Object.values(servers)) {
        const res = await autocannon({
          url: s.url,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          connections,
          duration: seconds,
        });
        if (res.non2xx || res.errors) throw new Error(`${res.non2xx} non-2xx, ${res.errors} errors`);
        s.rps.push(res.requests.average);
        s.p99.push(res.latency.p99);
      }
    }
  } finally {
    for (const s of Object.values(servers)) s.kill();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const base = median(servers.without!.rps);
  console.log(
    `| Fastify app answering 202 | req/s (median of ${rounds} × ${seconds} s) | p99 ms | vs without |`,
  );
  console.log('|---|---|---|---|');
  for (const [mode, s] of Object.entries(servers)) {
    const rps = median(s.rps);
    console.log(
      `| ${mode} connection handling | ${Math.round(rps)} | ${median(s.p99)} | ${((rps / base) * 100).toFixed(1)} % |`,
    );
  }
}
