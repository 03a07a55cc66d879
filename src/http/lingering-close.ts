import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * How long intake keeps reading what a client still sends after intake answered its request without
 * reading the whole body (a refusal such as 401 or 413). The names and defaults are nginx's.
 */
export interface LingerOptions {
  /** `INTAKE_LINGERING_TIME_MS` (default 30000): the most time spent reading after the response. */
  lingeringTimeMs: number;
  /** `INTAKE_LINGERING_TIMEOUT_MS` (default 5000): the longest wait for the client's next bytes. */
  lingeringTimeoutMs: number;
}

/**
 * Sockets whose current request was answered before its body was read. Their reading is governed by
 * the deadlines here, not by the request timeouts (server-timeouts.ts leaves them alone).
 */
const answered = new WeakSet<Socket>();
/** Sockets being closed by lingeringClose: nothing more is served on them. */
const lingering = new WeakSet<Socket>();
/** Stops the deadlines of a discardRestOfBody in progress (a lingering close takes over). */
const draining = new WeakMap<Socket, () => void>();

/** Whether the socket's request was answered early and the rest of its body is being read away. */
export function isAnsweredEarly(socket: Socket): boolean {
  return answered.has(socket);
}

/** Marks the socket's request as answered before its body was read (from the moment it is decided). */
export function markAnsweredEarly(socket: Socket): void {
  answered.add(socket);
}

/** Whether the socket is being closed: a request parsed from it now must not be served. */
export function isLingering(socket: Socket): boolean {
  return lingering.has(socket);
}

/**
 * Starts reading away the rest of `req`'s body (at most the body limit), which is being answered
 * without it on a connection kept alive: every chunk is discarded as it arrives. If the client goes
 * quiet for `lingeringTimeoutMs`, or the rest has not arrived within `lingeringTimeMs`, the
 * connection is destroyed. Once the body is complete, the connection serves its next request.
 *
 * Called before the response is written: Node would otherwise "dump" the request, which discards the
 * body inside its parser without any event, so a client trickling bytes could not be told from one
 * that went quiet (the socket's own timeout is Node's keep-alive timeout on this path).
 */
export function discardRestOfBody(req: IncomingMessage, opts: LingerOptions): void {
  const socket = req.socket;
  if (req.complete || socket.destroyed || answered.has(socket)) return;
  answered.add(socket);
  const total = setTimeout(() => socket.destroy(), opts.lingeringTimeMs);
  const idle = setTimeout(() => socket.destroy(), opts.lingeringTimeoutMs);
  const done = () => {
    clearTimeout(total);
    clearTimeout(idle);
    draining.delete(socket);
    if (!lingering.has(socket)) answered.delete(socket);
  };
  draining.set(socket, done);
  req.on('data', () => idle.refresh());
  req.once('end', done);
  req.once('close', done);
  socket.once('close', done);
  req.resume();
}

/**
 * Closes a connection whose client may still be uploading, so that it reads the response instead of
 * a reset: closing a socket with unread data makes the kernel send RST, and a client that is still
 * writing then fails with EPIPE/ECONNRESET, often before it has read the response already in its
 * buffer. This is nginx's lingering close: stop writing (FIN after the response), keep reading and
 * discarding, and close once the client closes its side, or sends nothing for `lingeringTimeoutMs`,
 * or `lingeringTimeMs` has passed (a client that trickles is cut). Node's parser keeps reading, so
 * it still frames the body, but copies nothing out of it (see stopBodyCopies); a request parsed
 * after this point is never served (guardLingeringSockets).
 *
 * Written by hand: no library does this for a Node HTTP server; Node itself destroys the socket.
 */
export function lingeringClose(socket: Socket, opts: LingerOptions): void {
  if (socket.destroyed || lingering.has(socket)) return;
  lingering.add(socket);
  answered.add(socket);
  draining.get(socket)?.();
  stopBodyCopies(socket);
  const total = setTimeout(() => socket.destroy(), opts.lingeringTimeMs);
  socket.once('close', () => clearTimeout(total));
  // Restarted by every read, including reads Node's parser consumes natively.
  socket.setTimeout(Math.min(opts.lingeringTimeoutMs, opts.lingeringTimeMs), () => socket.destroy());
  // The client closed its side: everything it sent has been read, so closing sends no reset.
  socket.once('end', () => socket.destroy());
  socket.resume();
  socket.end();
}

/**
 * Node's HTTP parser copies every chunk of a body into a new Buffer for the request stream, even a
 * request nobody reads; discarded, those copies are garbage that V8 collects only once tens of MiB
 * have piled up, so draining a large body would grow RSS by as much. The parser skips the copy when
 * it has no body callback: for a connection that will never serve another request, the callback is
 * removed while it drains, and put back before Node returns the parser to its pool ('close' runs
 * Node's own listener, which frees the parser, after this prepended one). Node internals (the
 * callback is found by the function Node installs); if they are not as expected, nothing is changed
 * and the drain merely makes garbage.
 */
function stopBodyCopies(socket: Socket): void {
  const parser = (socket as Socket & { parser?: Record<string, unknown> | null }).parser;
  if (!parser) return;
  const key = Object.keys(parser).find(
    (k) => (parser[k] as { name?: string } | null)?.name === 'parserOnBody',
  );
  if (key === undefined) return;
  const onBody = parser[key];
  parser[key] = undefined;
  socket.prependOnceListener('close', () => {
    parser[key] = onBody;
  });
}

/**
 * Nothing that arrives on a connection intake is closing is acted upon: it may never get an answer.
 * A request parsed after `Connection: close` (RFC 9112 §9.6) is dropped with the connection, and one
 * already under way when its connection started closing (a body that completes after its 408) stops
 * before validation and the route.
 */
export function guardLingeringSockets(app: FastifyInstance): void {
  const server = app.server;
  const handlers = server.listeners('request') as Array<(...args: unknown[]) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: unknown) => {
    if (lingering.has(req.socket)) {
      req.socket.destroy();
      return;
    }
    for (const h of handlers) h.call(server, req, res);
  });
  app.addHook('preValidation', (req, reply, done) => {
    if (lingering.has(req.raw.socket)) reply.hijack();
    done();
  });
}
