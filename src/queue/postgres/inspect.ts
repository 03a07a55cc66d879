import { createPool, type Queryable } from '../../store/pool.ts';
import { countQueued, queueTableExists } from '../../store/queue-table.ts';
import { databaseTls } from '../../store/tls.ts';
import type { QueueInspection } from '../queue.ts';
import type { PostgresQueueSettings } from './settings.ts';

/**
 * The queue table as it is: how many messages it holds against INTAKE_QUEUE_MAX_MESSAGES. Reads only.
 * The count is exact (doctor runs once; the producer's own sample stops at the limit).
 */
export async function inspectTable(db: Queryable, settings: PostgresQueueSettings): Promise<QueueInspection> {
  const address = serverAddress(settings.databaseUrl);
  let tlsVerified: boolean;
  try {
    tlsVerified = (await databaseTls(db, settings.databaseUrl)).verified;
  } catch (err) {
    return {
      kind: 'postgres',
      server: { reachable: false, address, error: (err as Error).message },
      store: undefined,
      consumer: undefined,
    };
  }
  const inspection: QueueInspection = {
    kind: 'postgres',
    server: { reachable: true, address, tlsVerified },
    store: undefined,
    consumer: undefined,
  };
  if (!(await queueTableExists(db))) return inspection;
  const messages = await countQueued(db, 2 ** 31 - 1);
  inspection.store = {
    name: 'intake.queue',
    drift: [],
    messages,
    bytes: undefined,
    maxMessages: settings.maxQueued,
    maxBytes: 0,
    usage: messages / settings.maxQueued,
    // The producer refuses a publish once the table holds maxQueued messages.
    hasRoom: messages < settings.maxQueued,
    trimAtPercent: undefined,
    replicas: undefined,
  };
  return inspection;
}

/**
 * A look at the queue table from a process that has not opened the queue (`intake doctor`): one
 * connection of its own, as `clientName` (its application_name).
 */
export async function inspectPostgresQueue(
  settings: PostgresQueueSettings,
  clientName: string,
): Promise<QueueInspection> {
  const pool = createPool({
    connectionString: settings.databaseUrl,
    max: 1,
    applicationName: clientName,
    onError: () => {}, // an idle connection lost: the next query reports it
  });
  try {
    return await inspectTable(pool, settings);
  } finally {
    await pool.end();
  }
}

/** Where the database is, without credentials: host and port (or socket directory) and database. */
function serverAddress(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    // A socket directory comes as ?host= (and ?port=), with no host in the URL (embedded PostgreSQL).
    const socket = u.searchParams.get('host');
    const port = u.searchParams.get('port');
    const host = u.host || (socket ? `${socket}${port ? `:${port}` : ''}` : 'localhost');
    return `${host}${u.pathname}`;
  } catch {
    return 'the database';
  }
}
