import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ProblemError } from './problem.ts';

/**
 * INTAKE_ADMIN_PORT: the routes that reveal personal data or change what is stored (scopes `privacy`
 * and `admin`: GDPR export, erasure and reveal, dead letters) are served on a second listener and on
 * no other, so the port a public load balancer or Ingress points at does not serve them at all,
 * whatever path tricks a proxy might be talked into. On that port they answer 404 exactly as an
 * unknown path does, before authentication (a 401 would tell that they exist); on the admin port every
 * other route answers 404 the same way. Without the setting, everything is served on the one port.
 *
 * One Fastify app serves both: the admin listener hands its requests to the app's own server (the
 * request event, as Fastify documents for serverless use), and this hook tells them apart by the
 * socket they came in on.
 */
const ADMIN_SCOPES = new Set(['privacy', 'admin']);

declare module 'fastify' {
  interface FastifyInstance {
    /** Set when the admin routes have a listener of their own (INTAKE_ADMIN_PORT). */
    adminListener?: AdminListener;
  }
}

export interface AdminListener {
  /** Starts the admin listener; resolves to its URL. */
  listen(port: number, host: string): Promise<string>;
  /** Stops accepting and closes its connections once their requests are answered. */
  close(): Promise<void>;
}

/** Splits the routes between the app's own port and an admin listener. Call before routes are added. */
export function separateAdminRoutes(
  app: FastifyInstance,
  timeouts: { requestTimeoutMs: number; headersTimeoutMs: number },
): AdminListener {
  const adminSockets = new WeakSet<Socket>();
  const server: Server = createServer((req, res) => app.server.emit('request', req, res));
  server.requestTimeout = timeouts.requestTimeoutMs;
  server.headersTimeout = timeouts.headersTimeoutMs;
  server.on('connection', (socket: Socket) => adminSockets.add(socket));

  // Registered before authentication, so a hidden route is a plain 404 to anyone.
  app.addHook('onRequest', async (req) => {
    const scope = req.routeOptions.config?.scope as string | undefined;
    const adminRoute = scope !== undefined && ADMIN_SCOPES.has(scope);
    if (adminRoute !== adminSockets.has(req.raw.socket))
      throw new ProblemError('NOT_FOUND', `no route for ${req.method} on this path`);
  });

  return {
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address();
          resolve(typeof a === 'object' && a ? `http://${host}:${a.port}` : `http://${host}:${port}`);
        });
      }),
    close: () =>
      new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
