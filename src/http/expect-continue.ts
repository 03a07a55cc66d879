import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { isLingering } from './lingering-close.ts';

/** Requests that asked for `100 Continue` and for which Node left the answer to us. */
const expecting = new WeakSet<IncomingMessage>();
/** Responses that sent `100 Continue`. */
const continued = new WeakSet<ServerResponse>();

/** Whether the client is waiting for `100 Continue` (and may never send the body without it). */
export function awaitsContinue(req: IncomingMessage, res: ServerResponse): boolean {
  return expecting.has(req) && !continued.has(res);
}

/**
 * `Expect: 100-continue`: the client sends the body only once told to. Node answers `100 Continue`
 * at once unless the server listens for 'checkContinue'; here the request goes through the app's
 * hooks first, so a refusal known from the headers (no or wrong key: 401/403, 429, or a Content-Length
 * over the limit: 413) is the answer, the same problem+json as anywhere else, and the body is never
 * sent. `100 Continue` goes out just before the body is parsed (preParsing), when nothing in the
 * headers refused the request.
 */
export function registerExpectContinue(app: FastifyInstance): void {
  app.server.on('checkContinue', (req, res) => {
    if (isLingering(req.socket)) {
      req.socket.destroy();
      return;
    }
    expecting.add(req);
    app.routing(req, res);
  });
  app.addHook('preParsing', (req, reply, payload, done) => {
    const res = reply.raw;
    if (awaitsContinue(req.raw, res) && !res.headersSent) {
      const length = req.headers['content-length'];
      // Over the limit, Fastify's parser answers 413 without reading: no 100, so no body is sent.
      if (length === undefined || Number(length) <= (req.routeOptions.bodyLimit ?? 0)) {
        res.writeContinue();
        continued.add(res);
      }
    }
    done(null, payload);
  });
}
