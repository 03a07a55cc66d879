import type { FastifyInstance } from 'fastify';

/**
 * Stops accepting and waits for in-flight requests. Fastify's close() waits for every connection to
 * end, and a keep-alive socket that was busy when close began is not closed when it turns idle (FACTS:
 * ~70 s hang), so idle sockets are closed every 100 ms, but only after a grace period: a socket the
 * kernel accepted just before the listener closed has its request still in flight, and Node counts it
 * as idle until the request is parsed (Go's Shutdown waits 5 s for such connections for the same
 * reason). Whatever is left at the deadline is cut.
 */
export async function closeHttp(app: FastifyInstance, timeoutMs: number, graceMs = 1000): Promise<void> {
  const server = app.server;
  let sweeper: NodeJS.Timeout | undefined;
  const start = setTimeout(() => {
    server.closeIdleConnections();
    sweeper = setInterval(() => server.closeIdleConnections(), 100);
  }, graceMs);
  const force = setTimeout(() => server.closeAllConnections(), Math.max(timeoutMs - 1000, 100));
  try {
    await app.close();
  } finally {
    clearTimeout(start);
    clearInterval(sweeper);
    clearTimeout(force);
  }
}
