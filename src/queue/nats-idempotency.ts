import { createHash } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { IdempotencyKeyInFlightError, IdempotencyKeyReusedError } from './errors.ts';

/**
 * Idempotency-Keys on the NATS queue: a JetStream KV bucket (max age = the idempotency window) maps
 * sha256(scoped key) to a claim, JSON `{"id","fp","state"}` (docs/queue-format.md):
 *
 * - `id`: the message id the key stands for; `fp`: the fingerprint (digest) of the request body it
 *   came with, absent when unknown; `state`: `pending` from the claim until the publish is acknowledged,
 *   then `done`.
 * - `kv.create` succeeds for exactly one claimant. Another request with the key then reads the claim:
 *   another fingerprint → IdempotencyKeyReusedError (422); `done` → the original id, nothing published;
 *   `pending` and younger than the in-flight window (publish timeout + margin) →
 *   IdempotencyKeyInFlightError (409); older → the claimant died or gave up (its outcome is unknown), so
 *   the claim is taken over (a compare-and-set on its revision) and the message is published again under
 *   the ORIGINAL id: if the first publish did reach the stream, the database's idempotent insert keeps
 *   one row.
 * - A value that is a bare id was written by versions before this format: read as done with an unknown
 *   fingerprint, and republished under that id, since those versions claimed before publishing.
 *
 * The age of a pending claim is the server's timestamp of the KV entry, so API processes need not agree
 * with each other's clocks, only roughly with the server's (the margin covers skew).
 */

/** What the caller does with a request after its key was looked at. */
export type Claim =
  /** This request owns the key: publish the message under its own id. */
  | { kind: 'new'; key: string; revision: number; value: ClaimValue }
  /** A pending claim was taken over, or an old-format value: publish again under `value.id`. */
  | { kind: 'republish'; key: string; revision: number; value: ClaimValue }
  /** Already acknowledged: answer with `value.id`, publish nothing. */
  | { kind: 'done'; value: ClaimValue };

export interface ClaimValue {
  id: string;
  fp?: string;
  state: 'pending' | 'done';
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The KV key of a scoped Idempotency-Key: hashed, because KV keys must be subject tokens and the client's key never goes on the wire. */
export function idempotencyKvKey(scopedKey: string): string {
  return createHash('sha256').update(scopedKey).digest('hex');
}

/** Reads a stored value; a bare UUID is the format before fingerprints (done, fingerprint unknown). */
export function decodeClaim(text: string): ClaimValue & { legacy: boolean } {
  if (UUID.test(text)) return { id: text, state: 'done', legacy: true };
  let v: Partial<ClaimValue> | null = null;
  try {
    v = JSON.parse(text) as Partial<ClaimValue> | null;
  } catch {
    // reported below
  }
  if (
    v === null ||
    typeof v !== 'object' ||
    typeof v.id !== 'string' ||
    !UUID.test(v.id) ||
    (v.state !== 'pending' && v.state !== 'done') ||
    (v.fp !== undefined && typeof v.fp !== 'string')
  ) {
    throw new Error(`idempotency entry is not a claim: ${text.slice(0, 40)}`);
  }
  return { id: v.id, state: v.state, ...(v.fp === undefined ? {} : { fp: v.fp }), legacy: false };
}

export function encodeClaim(v: ClaimValue): string {
  return JSON.stringify({ id: v.id, ...(v.fp === undefined ? {} : { fp: v.fp }), state: v.state });
}

const wrongLastSequence = (err: unknown) =>
  err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

export class IdempotencyClaims {
  constructor(
    private readonly bucket: () => KV | undefined,
    /** A pending claim younger than this is in flight (the publish timeout plus a margin). */
    private readonly inFlightMs: number,
  ) {}

  /** Claims `scopedKey` for message `id` sent with body fingerprint `fp`; see the file comment. */
  async claim(scopedKey: string, id: string, fp: string | undefined): Promise<Claim> {
    const kv = this.kv();
    const key = idempotencyKvKey(scopedKey);
    const mine: ClaimValue = { id, ...(fp === undefined ? {} : { fp }), state: 'pending' };
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const revision = await kv.create(key, encodeClaim(mine));
        return { kind: 'new', key, revision, value: mine };
      } catch (err) {
        if (!wrongLastSequence(err)) throw err;
      }
      const entry = await kv.get(key);
      if (entry?.operation !== 'PUT') continue; // expired or released meanwhile: claim again
      const { legacy, ...value } = decodeClaim(entry.string());
      if (fp !== undefined && value.fp !== undefined && value.fp !== fp) {
        throw new IdempotencyKeyReusedError(value.id);
      }
      if (legacy) return { kind: 'republish', key, revision: entry.revision, value };
      if (value.state === 'done') return { kind: 'done', value };
      if (Date.now() - entry.created.getTime() < this.inFlightMs) throw new IdempotencyKeyInFlightError();
      try {
        // Rewritten, so its age starts again: two processes cannot both take it over.
        const revision = await kv.update(key, encodeClaim(value), entry.revision);
        return { kind: 'republish', key, revision, value };
      } catch (err) {
        if (!wrongLastSequence(err)) throw err;
      }
    }
    throw new Error('idempotency key could not be claimed or read');
  }

  /** The message is acknowledged: later requests with the key get its id without a publish. */
  async done(claim: Claim): Promise<void> {
    if (claim.kind === 'done') return;
    await this.kv().update(claim.key, encodeClaim({ ...claim.value, state: 'done' }), claim.revision);
  }

  /**
   * The publish was refused (nothing stored): a claim this request created is removed, so a retry is
   * not told "in flight" and starts afresh. A taken-over claim stays: its first publish may have landed.
   */
  async release(claim: Claim): Promise<void> {
    if (claim.kind !== 'new') return;
    await this.kv().delete(claim.key, { previousSeq: claim.revision });
  }

  private kv(): KV {
    const kv = this.bucket();
    if (!kv) throw new Error('NATS idempotency bucket is not open yet');
    return kv;
  }
}
