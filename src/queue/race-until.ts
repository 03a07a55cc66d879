import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves with the promise's value, or undefined at `until` (epoch ms) or when `signal` aborts; the
 * promise itself keeps running. The timer is cleared as soon as either side wins.
 */
export async function raceUntil<T>(
  p: Promise<T>,
  until: number,
  signal?: AbortSignal,
): Promise<T | undefined> {
  if (signal?.aborted) return undefined;
  const ms = until - Date.now();
  if (ms <= 0) return undefined;
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([
      p,
      sleep(Number.isFinite(ms) ? ms : 2 ** 31 - 1, undefined, { signal: ac.signal }).catch(() => undefined),
    ]);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    ac.abort();
  }
}
