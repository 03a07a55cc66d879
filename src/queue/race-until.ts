/**
 * Resolves with the promise's value, or undefined at `until` (epoch ms; Infinity for never) or when
 * `signal` aborts; the promise itself keeps running. The timer is cleared as soon as either side wins.
 *
 * A plain timer, not timers/promises' setTimeout with an AbortController: cancelling that rejects with
 * an AbortError, a DOMException that captures a stack, on every call. The worker's consumer races each
 * envelope it reads, and the AbortController, DOMException and listener bookkeeping were a quarter of its
 * main thread's busy time (docs/capacity-plan.md#measurements-behind-choices-in-the-code).
 */
export function raceUntil<T>(p: Promise<T>, until: number, signal?: AbortSignal): Promise<T | undefined> {
  if (signal?.aborted) return Promise.resolve(undefined);
  const ms = until - Date.now();
  if (ms <= 0) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const settle = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', giveUp);
    };
    const giveUp = () => {
      settle();
      resolve(undefined);
    };
    // setTimeout takes at most 2^31-1 ms (a larger delay fires after 1 ms).
    if (Number.isFinite(ms)) timer = setTimeout(giveUp, Math.min(ms, 2 ** 31 - 1));
    signal?.addEventListener('abort', giveUp, { once: true });
    p.then(
      (v) => {
        settle();
        resolve(v);
      },
      (err: unknown) => {
        settle();
        reject(err);
      },
    );
  });
}
