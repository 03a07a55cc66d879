import { randomUUID } from 'node:crypto';
import { IntakeClient, IntakeError } from '../client/client.ts';

/**
 * `intake smoke`: the post-deployment proof (docs/deployment.md). Sends one canary message through the
 * public API with the client library (src/client) and waits until it can be read back from PostgreSQL,
 * proving API → queue → worker → store end to end. The canary's sender is `intake-smoke` so dashboards
 * and queries can exclude it. Failures are described in intake's words, never as a bare "fetch failed".
 */
export interface SmokeResult {
  ok: boolean;
  id?: string;
  acceptedMs?: number;
  storedMs?: number;
  error?: string;
}

/** One attempt's deadline for each request. */
const REQUEST_TIMEOUT_MS = 5000;

export async function runSmoke(opts: { url: string; key?: string; timeoutMs: number }): Promise<SmokeResult> {
  const base = opts.url.replace(/\/+$/, '');
  const headers: Record<string, string> = opts.key ? { authorization: `Bearer ${opts.key}` } : {};
  const canary = randomUUID();
  const started = Date.now();
  const get = (path: string) =>
    fetch(base + path, { headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch((err) => {
      throw new Error(unreachable(base, err));
    });
  try {
    const ready = await get('/readyz');
    if (ready.status !== 200)
      return { ok: false, error: `${base}/readyz answered ${ready.status}: not ready` };
    const client = new IntakeClient({
      url: base,
      ...(opts.key ? { apiKey: opts.key } : {}),
      timeoutMs: REQUEST_TIMEOUT_MS,
      retry: { attempts: 3, baseMs: 200 },
    });
    const { id } = await client
      .send({ ts: Math.floor(Date.now() / 1000), sender: 'intake-smoke', message: { canary } })
      .catch((err) => {
        throw new Error(
          err instanceof IntakeError && err.status === undefined
            ? unreachable(base, err.cause)
            : `POST /v1/messages refused the canary: ${(err as Error).message}`,
        );
      });
    const acceptedMs = Date.now() - started;
    while (Date.now() - started < opts.timeoutMs) {
      const got = await get(`/v1/messages/${id}`);
      if (got.status === 200) {
        const body = (await got.json()) as { message?: { canary?: string } };
        if (body.message?.canary !== canary)
          return { ok: false, id, error: 'stored record does not match the canary' };
        return { ok: true, id, acceptedMs, storedMs: Date.now() - started };
      }
      if (got.status !== 404)
        return { ok: false, id, error: `GET /v1/messages/${id} answered ${got.status}` };
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

/** Why a request to `base` got no answer, as an operator can act on it. */
export function unreachable(base: string, err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.cause?.code ?? (e as { code?: string })?.code;
  const hint = 'is intake running? pass --url';
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError')
    return `cannot connect to ${base}: no answer within ${REQUEST_TIMEOUT_MS} ms — ${hint}`;
  switch (code) {
    case 'ECONNREFUSED':
      return `cannot connect to ${base}: connection refused — ${hint}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${base}: host ${new URL(base).hostname} not found — pass --url`;
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return `cannot connect to ${base}: the connection was closed before an answer — ${hint}`;
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return `cannot connect to ${base}: connection timed out — ${hint}`;
    default:
      if (e?.cause?.message === 'bad port')
        return `cannot connect to ${base}: fetch refuses port ${new URL(base).port} (reserved for another protocol) — pass --url`;
      return `cannot connect to ${base}: ${code ?? e?.cause?.message ?? e?.message ?? String(err)} — ${hint}`;
  }
}
