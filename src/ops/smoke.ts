import { randomUUID } from 'node:crypto';

/**
 * `intake smoke`: the post-deployment proof (docs/deployment.md). Sends one canary message through the
 * public API and waits until it can be read back from PostgreSQL, proving API → queue → worker → store
 * end to end. The canary's sender is `intake-smoke` so dashboards and queries can exclude it.
 */
export interface SmokeResult {
  ok: boolean;
  id?: string;
  acceptedMs?: number;
  storedMs?: number;
  error?: string;
}

export async function runSmoke(opts: { url: string; key?: string; timeoutMs: number }): Promise<SmokeResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  const canary = randomUUID();
  const started = Date.now();
  try {
    const ready = await fetch(`${opts.url}/readyz`, { signal: AbortSignal.timeout(5000) });
    if (ready.status !== 200) return { ok: false, error: `/readyz answered ${ready.status}` };
    const res = await fetch(`${opts.url}/v1/messages`, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': `smoke-${canary}` },
      body: JSON.stringify({
        ts: Math.floor(Date.now() / 1000),
        sender: 'intake-smoke',
        message: { canary },
      }),
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status !== 202)
      return { ok: false, error: `POST /v1/messages answered ${res.status}: ${await res.text()}` };
    const { id } = (await res.json()) as { id: string };
    const acceptedMs = Date.now() - started;
    while (Date.now() - started < opts.timeoutMs) {
      const got = await fetch(`${opts.url}/v1/messages/${id}`, {
        headers,
        signal: AbortSignal.timeout(5000),
      });
      if (got.status === 200) {
        const body = (await got.json()) as { message?: { canary?: string } };
        if (body.message?.canary !== canary)
          return { ok: false, id, error: 'stored record does not match the canary' };
        return { ok: true, id, acceptedMs, storedMs: Date.now() - started };
      }
      if (got.status !== 404) return { ok: false, id, error: `GET answered ${got.status}` };
      await new Promise((r) => setTimeout(r, 200));
    }
    return {
      ok: false,
      id,
      acceptedMs,
      error: `accepted but not stored within ${opts.timeoutMs} ms: is the worker running?`,
    };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}
