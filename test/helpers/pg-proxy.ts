import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that can cut one connection of a chosen application at a chosen
 * statement, the way a network fault or a server crash would. It reads only what it must of the wire
 * protocol: the application_name in the startup message and the statement text inside the client's
 * messages (a simple query or a Parse). A cut forwards the statement to the server and then
 * drops the client's side, so the client never learns the outcome; the server side stays open a
 * moment so the server still executes what it received.
 */
export interface PgProxy {
  url: string;
  /**
   * Arms one cut: the next connection of `application` whose client sends a simple query containing
   * `statement` is cut right after that query is forwarded. Resolves once the cut happened; rejects
   * if it has not within `timeoutMs` (default 10 s).
   */
  cutAt(application: string, statement: string, timeoutMs?: number): Promise<void>;
  /**
   * Like cutAt, but the connection is kept open and nothing more reaches the client: a server that
   * stopped answering (frozen, or a network black hole) rather than one that went away.
   */
  holdAt(application: string, statement: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startPgProxy(upstreamUrl: string): Promise<PgProxy> {
  const up = new URL(upstreamUrl);
  const sockets = new Set<Socket>();
  let armed: { application: string; statement: Buffer; hold: boolean; done: () => void } | undefined;

  const server: Server = createServer((client) => {
    const upstream = connect(Number(up.port || 5432), up.hostname);
    sockets.add(client).add(upstream);
    let application: string | undefined;
    let cut = false;
    client.on('data', (chunk: Buffer) => {
      if (cut) return;
      if (application === undefined)
        application = /application_name\0([^\0]*)\0/.exec(chunk.toString('latin1'))?.[1] ?? '';
      const a = armed;
      if (a && a.application === application && chunk.includes(a.statement)) {
        armed = undefined;
        cut = true;
        upstream.write(chunk);
        if (!a.hold) {
          client.destroy();
          setTimeout(() => upstream.destroy(), 500);
        }
        a.done();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!cut) client.write(chunk);
    });
    const end = () => {
      client.destroy();
      if (!cut) upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const url = new URL(upstreamUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    cutAt: (application, statement, timeoutMs) => arm(application, statement, false, timeoutMs),
    holdAt: (application, statement, timeoutMs) => arm(application, statement, true, timeoutMs),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  function arm(application: string, statement: string, hold: boolean, timeoutMs = 10_000) {
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        armed = undefined;
        reject(new Error(`no ${application} connection sent ${statement} within ${timeoutMs} ms`));
      }, timeoutMs);
      armed = {
        application,
        statement: Buffer.from(statement),
        hold,
        done: () => {
          clearTimeout(t);
          resolve();
        },
      };
    });
  }
}
