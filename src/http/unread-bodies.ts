import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { awaitsContinue } from './expect-continue.ts';
import {
  discardRestOfBody,
  type LingerOptions,
  lingeringClose,
  markAnsweredEarly,
} from './lingering-close.ts';

/**
 * What happens to the rest of a body when intake answers before reading it (401, 403, 415, 429 from
 * the hooks, 413 by Content-Length or while counting a chunked body, any refusal). The rest is read
 * away and discarded under the lingering deadlines, and:
 *
 * - if it is known to be small (Content-Length within the body limit), the response keeps the
 *   connection alive, so the next request follows once the rest has arrived, as nginx does when it
 *   discards a body it does not need (discardRestOfBody);
 * - otherwise (larger, chunked, or a client still waiting for `100 Continue` that may never send the
 *   body), the response says `Connection: close` and the socket is closed by lingeringClose, so the
 *   client reads the refusal rather than a reset.
 */
export function registerUnreadBodies(app: FastifyInstance, opts: LingerOptions): void {
  app.addHook('onSend', (req, reply, payload, done) => {
    const raw = req.raw;
    // Read in full (or injected by Fastify's inject(), which has no connection and no `complete`).
    if (raw.complete !== false) return done(null, payload);
    const socket = raw.socket;
    const close =
      String(reply.getHeader('connection') ?? '').toLowerCase() === 'close' ||
      awaitsContinue(raw, reply.raw) ||
      !smallKnownBody(raw, req.routeOptions.bodyLimit ?? 0);
    // Node ends a response it closes the connection after (ours, or the client's Connection: close,
    // or HTTP/1.0) with socket.destroySoon(), which destroys the socket once the response is flushed,
    // unread body or not: that is the reset the lingering close replaces.
    socket.destroySoon = () => lingeringClose(socket, opts);
    if (close) {
      reply.header('connection', 'close');
      markAnsweredEarly(socket);
      raw.resume();
    } else {
      discardRestOfBody(raw, opts);
    }
    done(null, payload);
  });
}

function smallKnownBody(req: IncomingMessage, limit: number): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return false;
  const length = Number(req.headers['content-length']);
  return Number.isSafeInteger(length) && length <= limit;
}
