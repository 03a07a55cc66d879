import type { FastifyInstance } from 'fastify';

/**
 * Stops accepting and waits for in-flight requests, without resetting a request a client has
 * already sent.
 *
 * - The listener closes at once, in the same tick as the caller starts answering `Connection: close`,
 *   so a client told to reconnect is refused (nothing sent) rather than accepted into a backlog that
 *   the closing listener then resets.
 * - Node >= 19's server.close() also closes every idle keep-alive socket at once. A socket is idle to
 *   Node until it has parsed the next request, so one whose client has just written a request (still
 *   in the socket's buffer or on the wire) was reset with it. That first sweep is suppressed: every
 *   connection that sends a request gets its answer with `Connection: close` (app.ts), and sockets
 *   still idle after `graceMs` are closed then, and every 100 ms after (Go's Shutdown waits for new
 *   connections for the same reason). A keep-alive socket that was busy when close began is not
 *   closed by Node when it turns idle (it hangs: docs/capacity-plan.md#measurements-behind-choices-in-the-code), hence the repeated sweep.
 * - Whatever is left a second before the deadline is cut.
 */
export async function closeHttp(app: FastifyInstance, timeoutMs: number, graceMs = 1000): Promise<void> {
  const server = app.server;
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {};
  server.close();
  let sweeper: NodeJS.Timeout | undefined;
  const start = setTimeout(() => {
    closeIdle();
    sweeper = setInterval(closeIdle, 100);
  }, graceMs);
  const force = setTimeout(() => server.closeAllConnections(), Math.max(timeoutMs - 1000, 100));
  try {
    // Fastify closes the (already closed) server again and resolves once every connection is gone.
    await app.close();
  } finally {
    clearTimeout(start);
    clearInterval(sweeper);
    clearTimeout(force);
    server.closeIdleConnections = closeIdle;
  }
}
