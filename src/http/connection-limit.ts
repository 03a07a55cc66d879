import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../ops/metrics.ts';
import { ERRORS } from './error-registry.ts';
import { rawProblemResponse } from './problem.ts';

/** What the connection cap needs. */
export interface ConnectionLimitOptions {
  /** `INTAKE_MAX_CONNECTIONS`: connections this process holds open at most. */
  maxConnections: number;
}

/** How long a refused connection may take to read its 503 before it is closed outright. */
export const REFUSED_LINGER_MS = 1000;

/**
 * At most `maxConnections` connections per process (INTAKE_MAX_CONNECTIONS). Slow clients (say, a few
 * thousand refused with 401 that trickle a byte every few seconds through the lingering close) would
 * otherwise hold every descriptor and all the memory a pod has, and starve its probes.
 *
 * Past the cap a new connection gets `503 SERVER_BUSY` with `Retry-After: 1` and `Connection: close`,
 * written at once without reading its request, then is closed (after at most REFUSED_LINGER_MS of
 * reading away what the client sends, so it reads the 503, not a reset); counted in
 * `intake_http_connections_refused_total`. Node's own `server.maxConnections` closes such a socket
 * before a byte is written: a client or a proxy then sees an empty reply (a proxy reports 502), where
 * a 503 says "try again, elsewhere". The cost of answering is one small write and a socket for at most
 * a second, which is why the default cap leaves room below the descriptor limit (config.ts).
 *
 * Written by hand: Node and Fastify offer only the silent drop. Node's HTTP server handles a connection
 * in its 'connection' listener; this runs first and hands only the admitted ones on to it.
 */
export function limitConnections(app: FastifyInstance, opts: ConnectionLimitOptions, metrics: Metrics): void {
  const server = app.server;
  let open = 0;
  metrics.httpConnectionsLimit.set(opts.maxConnections);
  metrics.httpConnectionsOpen.set(0);
  const response = rawProblemResponse(
    'SERVER_BUSY',
    `this server holds its most connections (${opts.maxConnections}): retry after ${ERRORS.SERVER_BUSY.retryAfterS} s`,
  );

  const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    if (open >= opts.maxConnections) {
      metrics.httpConnectionsRefused.inc();
      refuse(socket, response);
      return;
    }
    open++;
    metrics.httpConnectionsOpen.set(open);
    socket.once('close', () => {
      open--;
      metrics.httpConnectionsOpen.set(open);
    });
    for (const h of handlers) h.call(server, socket);
  });
}

function refuse(socket: Socket, response: string): void {
  socket.on('error', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
  socket.once('close', () => clearTimeout(timer));
  // The client closed its side once it read the answer: nothing unread is left, closing sends no reset.
  socket.once('end', () => socket.destroy());
  socket.resume();
  socket.end(response);
}
