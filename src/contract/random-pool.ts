import { randomFillSync } from 'node:crypto';

/**
 * Bytes from the CSPRNG, drawn from a 4 KiB pool: one getrandom call per pool instead of one per
 * message: per-call randomness (a UUIDv7 and an AES-GCM IV per message) was a large share of the API's
 * CPU under load (docs/capacity-plan.md#measurements-behind-choices-in-the-code). The bytes are the same CSPRNG output; each is handed out once.
 */
const pool = Buffer.alloc(4096);
let offset = pool.length;

export function randomBytesPooled(n: number): Buffer {
  if (n > pool.length) throw new RangeError(`at most ${pool.length} bytes at a time`);
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}

/**
 * `n` bytes from the same pool as lowercase hex (trace and span ids): read straight from the pool, with
 * no Buffer copied for them, a third of the CPU of `randomBytesPooled(n).toString('hex')`
 * (docs/capacity-plan.md#measurements-behind-choices-in-the-code).
 */
export function randomHexPooled(n: number): string {
  if (n > pool.length) throw new RangeError(`at most ${pool.length} bytes at a time`);
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = pool.toString('hex', offset, offset + n);
  offset += n;
  return out;
}
