import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { registerExpectContinue } from './expect-continue.ts';
import { guardLingeringSockets, lingeringClose } from './lingering-close.ts';
import { rawProblemResponse } from './problem.ts';
import { enforceServerTimeouts, type TimeoutOptions } from './server-timeouts.ts';
import { registerUnreadBodies } from './unread-bodies.ts';

/**
 * Connection handling at the HTTP edge: every refusal reaches a client that is still uploading
 * (unread-bodies.ts, lingering-close.ts), `Expect: 100-continue` is refused before the body is sent
 * (expect-continue.ts), and slow clients get `408` when their timeout expires (server-timeouts.ts).
 * Call before the server listens.
 */
export function registerConnectionHandling(app: FastifyInstance, opts: TimeoutOptions): void {
  answerHalfClosedClients(app);
  refuseConnect(app, opts);
  guardLingeringSockets(app);
  enforceServerTimeouts(app, opts);
  registerExpectContinue(app);
  registerUnreadBodies(app, opts);
}

/**
 * A client that shuts down its write side once it has sent the request (`nc -N`, HTTP/1.0 tools, some
 * proxies) still gets its answer, as from nginx: RFC 9112 §9.6, a half-closed connection does not mean
 * the client lost interest. Node's HTTP server ends its own side as soon as the client's FIN arrives,
 * before the response is written, unless `httpAllowHalfOpen` is set: then the response in progress is
 * marked as the connection's last and the connection closes after it. The request was served either
 * way (its messages were queued), so without this such a client saw nothing and retried, a duplicate.
 * A FIN before the request is complete is still a 400 (Node's parser reports the truncated request).
 *
 * `httpAllowHalfOpen` is a property of Node's http.Server that Node does not document but keeps (its
 * removal, nodejs/node#36819, was abandoned because libraries rely on it); no Fastify option sets it.
 */
function answerHalfClosedClients(app: FastifyInstance): void {
  (app.server as typeof app.server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
}

/**
 * `CONNECT host:port` asks for a tunnel: intake is not a proxy, so it answers `405 METHOD_NOT_ALLOWED`
 * like any other request it does not serve, instead of the silent close Node gives a server with no
 * 'connect' listener. Node hands such a request over with the raw socket (its parser is gone), so the
 * answer is written by hand and the connection closed, lingering so the client reads it.
 */
function refuseConnect(app: FastifyInstance, opts: TimeoutOptions): void {
  // RFC 9110 §15.5.6: a 405 lists what is allowed; these are the methods intake serves at all.
  const response = rawProblemResponse('METHOD_NOT_ALLOWED', 'CONNECT is not supported: this is not a proxy', {
    Allow: SERVED_METHODS,
  });
  app.server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => socket.destroy());
    if (socket.writable) socket.write(response);
    lingeringClose(socket, opts);
  });
}

/** Every method some intake route answers. */
const SERVED_METHODS = 'GET, HEAD, POST, DELETE';
