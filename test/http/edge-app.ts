import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { RawConnection } from '../clients/raw-http.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/** intake's API in this process (Postgres queue, no worker), with what the connection tests look at. */
export interface EdgeApp {
  app: TestApp;
  url: string;
  /** Messages on the queue (nothing consumes them: there is no worker). */
  queued(): Promise<number>;
  /** Connections the server holds open. */
  connections(): Promise<number>;
  /** Resolves once the server holds no connection (it closed every one it had). */
  allClosed(): Promise<void>;
  /** Closes raw connections a test left open, then the app. */
  close(): Promise<void>;
}

export async function startEdgeApp(label: string, env: Record<string, string>): Promise<EdgeApp> {
  const app = await startTestApp(label, { roles: ['api'], env });
  const db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
  const connections = () =>
    new Promise<number>((resolve, reject) =>
      app.running.app!.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
  return {
    app,
    url: app.url,
    connections,
    queued: async () =>
      (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM intake.queue')).rows[0]!.n,
    allClosed: async () => {
      await waitFor('the server to close its connections', async () => (await connections()) === 0, 5000, 10);
    },
    async close() {
      RawConnection.destroyAll();
      await db.end();
      await app.close();
    },
  };
}
