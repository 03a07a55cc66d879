import { createHash } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { IdempotencyKeyInFlightError, IdempotencyKeyReusedError } from '../errors.ts';

/**
 * Idempotency-Keys on the NATS queue: a JetStream KV bucket (max age = the idempotency window) maps
 * sha256(scoped key) to a claim, JSON `{"id","mac","sub","state"}` (docs/queue-format.md):
 *
 * - `id`: the message id the key stands for; `mac`: the keyed fingerprint of the request body it came
 *   with (privacy/ip-protector.ts), absent when unknown; `sub`: the IP pseudonym of the message, absent
 *   without an IP; `state`: `pending` from the claim until the publish is acknowledged, then `done`.
 * - Values written before the keyed fingerprint held `fp`, a plain SHA-256 of the body: it is ignored
 *   (the key is honoured without a body check) and the entry expires with the bucket's max age.
 * - For erasure, a claim with a subject has an index entry `s.<pseudonym, base64url>.<key>` (empty,
 *   written alongside the claim, same max age): the subject's claims are listed by that prefix, a
 *   filtered look-up, instead of reading every value of the bucket. Both entries are then removed by
 *   sequence with the server's secure erase, which leaves no delete marker naming the pseudonym.
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
  /** Keyed fingerprint of the body. */
  mac?: string;
  /** IP pseudonym (base64) of the message. */
  sub?: string;
  state: 'pending' | 'done';
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The KV key of a scoped Idempotency-Key: hashed, because KV keys must be subject tokens and the client's key never goes on the wire. */
export function idempotencyKvKey(scopedKey: string): string {
  return createHash('sha256').update(scopedKey).digest('hex');
}

/** The index entry that lists a claim under its subject's pseudonym (KV keys allow base64url). */
export function subjectIndexKey(pseudonym: string, key: string): string {
  return `${subjectIndexPrefix(pseudonym)}${key}`;
}

const subjectIndexPrefix = (pseudonym: string) =>
  `s.${Buffer.from(pseudonym, 'base64').toString('base64url')}.`;

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
    (v.mac !== undefined && typeof v.mac !== 'string') ||
    (v.sub !== undefined && typeof v.sub !== 'string')
  ) {
    throw new Error(`idempotency entry is not a claim: ${text.slice(0, 40)}`);
  }
  return {
    id: v.id,
    ...(v.mac === undefined ? {} : { mac: v.mac }),
    ...(v.sub === undefined ? {} : { sub: v.sub }),
    state: v.state,
    legacy: false,
  };
}

export function encodeClaim(v: ClaimValue): string {
  return JSON.stringify({
    id: v.id,
    ...(v.mac === undefined ? {} : { mac: v.mac }),
    ...(v.sub === undefined ? {} : { sub: v.sub }),
    state: v.state,
  });
}

const wrongLastSequence = (err: unknown) =>
  err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

export class IdempotencyClaims {
  constructor(
    private readonly bucket: () => KV | undefined,
    private readonly manager: () => JetStreamManager | undefined,
    /** The bucket's stream (`KV_<bucket>`), whose messages erasure removes. */
    private readonly stream: string,
    /** A pending claim younger than this is in flight (the publish timeout plus a margin). */
    private readonly inFlightMs: number,
  ) {}

  /**
   * Claims `scopedKey` for message `id` sent with body fingerprint `mac` and IP pseudonym `sub`; see the
   * file comment. The subject's index entry is written alongside (no extra round trip); if it fails the
   * claim fails too, and a claim this call created is given back.
   */
  async claim(
    scopedKey: string,
    id: string,
    mac: string | undefined,
    sub: string | undefined = undefined,
  ): Promise<Claim> {
    const kv = this.kv();
    const key = idempotencyKvKey(scopedKey);
    const indexed =
      sub === undefined
        ? undefined
        : kv.put(subjectIndexKey(sub, key), '').then(
            () => undefined,
            (err: unknown) => err,
          );
    let claim: Claim;
    try {
      claim = await this.claimKey(kv, key, {
        id,
        ...(mac === undefined ? {} : { mac }),
        ...(sub === undefined ? {} : { sub }),
        state: 'pending',
      });
    } catch (err) {
      await indexed;
      throw err;
    }
    const failed = await indexed;
    if (failed !== undefined) {
      await this.release(claim).catch(() => {});
      throw failed;
    }
    return claim;
  }

  private async claimKey(kv: KV, key: string, mine: ClaimValue): Promise<Claim> {
    const fp = mine.mac;
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
      if (fp !== undefined && value.mac !== undefined && value.mac !== fp) {
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

  /**
   * Removes the claims of a subject's requests and their index entries (GDPR erasure); returns how many
   * claims. A claim another subject's request made under the same key (a reused key) stays.
   */
  async forgetSubject(pseudonym: string): Promise<number> {
    const kv = this.kv();
    const jsm = this.manager();
    if (!jsm) throw new Error('NATS is not connected');
    const prefix = subjectIndexPrefix(pseudonym);
    const index: string[] = [];
    for await (const k of await kv.keys(`${prefix}>`)) index.push(k);
    let forgotten = 0;
    for (const ik of index) {
      const entry = await kv.get(ik.slice(prefix.length));
      if (entry?.operation === 'PUT') {
        let sub: string | undefined;
        try {
          sub = decodeClaim(entry.string()).sub;
        } catch {
          // not a claim: left alone
        }
        if (sub === pseudonym && (await this.erase(jsm, entry.revision))) forgotten++;
      }
      const own = await kv.get(ik);
      if (own) await this.erase(jsm, own.revision);
    }
    return forgotten;
  }

  /** Removes one message of the bucket's stream, overwriting it on disk (secure erase). */
  private async erase(jsm: JetStreamManager, seq: number): Promise<boolean> {
    try {
      return await jsm.streams.deleteMessage(this.stream, seq, true);
    } catch (err) {
      // Gone already (expired, or another erasure of the same subject).
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound) return false;
      throw err;
    }
  }

  private kv(): KV {
    const kv = this.bucket();
    if (!kv) throw new Error('NATS idempotency bucket is not open yet');
    return kv;
  }
}
