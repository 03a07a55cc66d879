import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import { NON_FINITE_DETAIL, nonFiniteNumbers } from '../contract/json-numbers.ts';
import { jsonTooComplex } from './json-limits.ts';
import { ProblemError } from './problem.ts';

/**
 * The bytes after a leading UTF-8 byte-order mark (EF BB BF), if there is one. RFC 8259 §8.1: senders
 * must not add one, parsers may ignore it; PowerShell 5, Notepad and some .NET writers add it, and
 * refusing their bodies helps nobody. Only at the very start of a body: anywhere else it is content.
 */
export function withoutBom(bytes: Buffer): Buffer {
  return bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes;
}

/**
 * The only body intake parses is one JSON document sent as `application/json` (charset optional, and
 * UTF-8 if given). Fastify's other default parsers (text/plain) are removed, so anything else is `415`.
 * Plain JSON.parse: an own `__proto__` key stays an ordinary key that the schema then rejects as an
 * unknown field, instead of secure-json-parse refusing the whole body with a vaguer error. The bytes
 * must be valid UTF-8: decoding would otherwise replace bad bytes with U+FFFD and store a message the
 * client never sent. A byte-order mark before the JSON is ignored.
 */
export function registerJsonParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, raw, done) => {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1];
    if (charset && !/^utf-?8$/i.test(charset)) {
      done(
        new ProblemError('UNSUPPORTED_MEDIA_TYPE', `charset ${charset} is not supported: send UTF-8`),
        undefined,
      );
      return;
    }
    const bytes = withoutBom(raw as Buffer);
    if (!isUtf8(bytes)) {
      done(new ProblemError('INVALID_JSON', 'the body is not valid UTF-8'), undefined);
      return;
    }
    const tooComplex = jsonTooComplex(bytes);
    if (tooComplex) {
      done(new ProblemError('JSON_TOO_COMPLEX', tooComplex), undefined);
      return;
    }
    const body = bytes.toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (err) {
      // V8's message quotes part of the body, which may hold personal data: keep only the position.
      const at = /position (\d+)/.exec((err as Error).message)?.[1];
      const where = at ? ` (at character ${at})` : body.length === 0 ? ' (the body is empty)' : '';
      done(new ProblemError('INVALID_JSON', `the body is not valid JSON${where}`), undefined);
      return;
    }
    const huge = nonFiniteNumbers(body, value);
    if (huge.length) {
      done(
        new ProblemError('INVALID_MESSAGE', 'a number in the body is too large to be stored', {
          errors: huge.map((pointer) => ({ pointer, detail: NON_FINITE_DETAIL })),
        }),
        undefined,
      );
      return;
    }
    done(null, value);
  });
}
