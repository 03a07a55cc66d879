import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { isLingering } from './lingering-close.ts';

/** Responses that sent `100 Continue`. */
const continued = new WeakSet<ServerResponse>();

/** Whether the client asked to wait for `100 Continue` and has not been sent one. */
export function awaitsContinue(req: IncomingMessage, res: ServerResponse): boolean {
  const expect = req.headers.expect;
  return expect !== undefined && /(^|,)\s*100-continue\s*($|,)/i.test(expect) && !continued.has(res);
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
    if (isLingering(req.socket)) req.socket.destroy();
    else app.routing(req, res);
  });
  app.addHook('preParsing', (req, reply, payload, done) => {
    const res = reply.raw;
    const length = req.headers['content-length'];
    // Over the limit, Fastify's parser answers 413 without reading: no 100, so no body is sent.
    const tooLarge = length !== undefined && Number(length) > (req.routeOptions.bodyLimit ?? 0);
    if (awaitsContinue(req.raw, res) && !res.headersSent && !tooLarge) {
      res.writeContinue();
      continued.add(res);
    }
    done(null, payload);
  });
}
