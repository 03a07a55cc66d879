import { createHash } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';

/**
 * What an insider reads: every value of every table of the intake schema (partitions included), and
 * every message (subject, headers, data) of every stream on a NATS server, KV buckets included. Text
 * values are cut into the tokens a digest could be (base64, base64url, hex); binary values are kept
 * as bytes, since a digest may be stored raw.
 */
export interface StoredValues {
  /** Every token of 16+ base64/hex characters, with where it was seen first. */
  tokens: Map<string, string>;
  /** Binary values (bytea, message payloads), with where they were seen. */
  blobs: Array<{ where: string; bytes: Buffer }>;
  /** Every text value read, with where. */
  texts: Array<{ where: string; text: string }>;
}

const TOKEN = /[A-Za-z0-9+/_=-]{16,}/g;

export function emptyValues(): StoredValues {
  return { tokens: new Map(), blobs: [], texts: [] };
}

function addText(out: StoredValues, where: string, text: string): void {
  out.texts.push({ where, text });
  for (const m of text.matchAll(TOKEN)) {
    for (const t of [m[0], m[0].replace(/=+$/, '')]) if (!out.tokens.has(t)) out.tokens.set(t, where);
  }
}

function addValue(out: StoredValues, where: string, v: unknown): void {
  if (v === null || v === undefined) return;
  if (Buffer.isBuffer(v)) {
    out.blobs.push({ where, bytes: v });
    addText(out, where, v.toString('latin1'));
    addText(out, where, v.toString('base64'));
    addText(out, where, v.toString('hex'));
    return;
  }
  addText(out, where, typeof v === 'object' && !(v instanceof Date) ? JSON.stringify(v) : String(v));
}

/** Every row of every table (and partition) in the intake schema, read as the database's owner could. */
export async function readDatabase(url: string, out = emptyValues()): Promise<StoredValues> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const tables = await db.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'intake' AND c.relkind = 'r' ORDER BY 1`,
    );
    for (const { name } of tables.rows) {
      const r = await db.query(`SELECT * FROM intake.${pg.escapeIdentifier(name)}`);
      for (const row of r.rows)
        for (const [col, v] of Object.entries(row)) addValue(out, `intake.${name}.${col}`, v);
    }
    return out;
  } finally {
    await db.end();
  }
}

/** Every message of every stream (the queue, the Idempotency-Key bucket, the probe) on a NATS server. */
export async function readNats(servers: string, out = emptyValues()): Promise<StoredValues> {
  const nc = await connect({ servers: servers.split(','), maxReconnectAttempts: 0 });
  try {
    const jsm = await jetstreamManager(nc);
    for await (const si of jsm.streams.list()) {
      const name = si.config.name;
      for (let seq = si.state.first_seq; seq <= si.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(name, { seq }).catch(() => null);
        if (!m) continue;
        const where = `nats ${name} #${seq}`;
        addText(out, `${where} subject`, m.subject);
        if (m.header) for (const [k, v] of m.header) addText(out, `${where} header ${k}`, v.join(','));
        addValue(out, `${where} data`, Buffer.from(m.data));
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

const HASHES = ['sha256', 'sha1', 'md5'] as const;

/** The unkeyed digests of one text a reader could compute, in every usual encoding. */
export function digests(text: string): Array<{ how: string; token?: string; raw?: Buffer }> {
  const out: Array<{ how: string; token?: string; raw?: Buffer }> = [];
  for (const h of HASHES) {
    const raw = createHash(h).update(text).digest();
    out.push({ how: `${h} raw`, raw });
    out.push({ how: `${h} hex`, token: raw.toString('hex') });
    out.push({ how: `${h} base64`, token: raw.toString('base64').replace(/=+$/, '') });
    out.push({ how: `${h} base64url`, token: raw.toString('base64url') });
  }
  return out;
}

/** Where (if anywhere) one of `text`'s digests is stored. */
export function findDigest(values: StoredValues, text: string): string | undefined {
  for (const d of digests(text)) {
    if (d.token !== undefined && values.tokens.has(d.token))
      return `${d.how} in ${values.tokens.get(d.token)}`;
    if (d.raw) for (const b of values.blobs) if (b.bytes.includes(d.raw)) return `${d.how} in ${b.where}`;
  }
  return undefined;
}

/** The 256 addresses of the /24 an IPv4 address is in: the true one and 255 others. */
export function guessesFor(ip: string): string[] {
  const prefix = ip.split('.').slice(0, 3).join('.');
  return Array.from({ length: 256 }, (_, i) => `${prefix}.${i}`);
}

/** Where the IP is stored as plain text, as a whole address (not a prefix of a longer one). */
export function whereIsIp(values: StoredValues, ip: string): string[] {
  const re = new RegExp(`(?<![\\d.])${ip.replace(/\./g, '\\.')}(?![\\d.])`);
  return values.texts.filter((t) => re.test(t.text)).map((t) => t.where);
}

/** Where a string occurs in any text value. */
export function whereIs(values: StoredValues, needle: string): string[] {
  return [...new Set(values.texts.filter((t) => t.text.includes(needle)).map((t) => t.where))];
}
