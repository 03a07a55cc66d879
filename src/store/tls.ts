import type { Queryable } from './pool.ts';

/** How a database connection is protected, for `intake doctor`. */
export interface DatabaseTls {
  /** The server says this backend's connection is TLS (pg_stat_ssl). */
  encrypted: boolean;
  /** The client checked the server's certificate chain and host name (sslmode=verify-full). */
  verified: boolean;
  /** One line for the operator. */
  detail: string;
}

/**
 * Asks the server whether this very connection is TLS (pg_stat_ssl for pg_backend_pid()), and reads
 * from the URL whether the client verifies the server: only `sslmode=verify-full` is reported as
 * verified, the one mode that checks both the chain (against `sslrootcert`, else the system's CAs) and
 * the host name in libpq and node-postgres alike.
 */
export async function databaseTls(db: Queryable, url: string): Promise<DatabaseTls> {
  const r = await db.query<{ ssl: boolean; version: string | null }>(
    'SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
  );
  const encrypted = r.rows[0]?.ssl === true;
  const params = new URL(url).searchParams;
  const mode = params.get('sslmode');
  const root = params.get('sslrootcert');
  const verified = encrypted && mode === 'verify-full';
  if (!encrypted)
    return {
      encrypted,
      verified,
      detail: 'not TLS: set sslmode=verify-full&sslrootcert=<CA file> in DATABASE_URL',
    };
  const against = root ? `against ${root}` : "against the system's CAs";
  return {
    encrypted,
    verified,
    detail: verified
      ? `TLS (${r.rows[0]!.version}), server certificate and host name verified ${against}`
      : `TLS (${r.rows[0]!.version}), sslmode=${mode ?? 'unset'}: the server is not verified; set sslmode=verify-full`,
  };
}
