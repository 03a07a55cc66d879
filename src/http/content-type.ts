import type { FastifyInstance } from 'fastify';
import { ProblemError } from './problem.ts';

/**
 * The only body intake parses is one JSON document sent as `application/json` (charset optional, and
 * UTF-8 if given). Fastify's other default parsers (text/plain) are removed, so anything else is `415`.
 * Plain JSON.parse: an own `__proto__` key stays an ordinary key that the schema then rejects as an
 * unknown field, instead of secure-json-parse refusing the whole body with a vaguer error.
 */
export function registerJsonParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1];
    if (charset && !/^utf-?8$/i.test(charset)) {
      done(
        new ProblemError('UNSUPPORTED_MEDIA_TYPE', `charset ${charset} is not supported: send UTF-8`),
        undefined,
      );
      return;
    }
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      // V8's message quotes part of the body, which may hold personal data: keep only the position.
      const at = /position (\d+)/.exec((err as Error).message)?.[1];
      const where = at
        ? ` (at character ${at})`
        : (body as string).length === 0
          ? ' (the body is empty)'
          : '';
      done(new ProblemError('INVALID_JSON', `the body is not valid JSON${where}`), undefined);
    }
  });
}
