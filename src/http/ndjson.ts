import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import { NON_FINITE_DETAIL, nonFiniteNumbers } from '../contract/json-numbers.ts';
import { withoutBom } from './content-type.ts';
import { jsonTooComplex } from './json-limits.ts';
import { ProblemError } from './problem.ts';

/**
 * `application/x-ndjson` bodies (one JSON message per line, as Vector, Kafka REST and most log shippers
 * send them), parsed as a stream: each line is parsed on its own as soon as it is complete, so a bad
 * line costs only itself (its entry says why) and memory holds one line plus the parsed results. The
 * whole body is held to the body limit and to MAX_NDJSON_LINES. Blank lines are skipped, as the
 * format allows; `\r\n` line ends are accepted.
 */

export const MAX_NDJSON_LINES = 10_000;

/** One line of an NDJSON body: its parsed value, or why it could not be parsed (and where, if known). */
export type NdjsonLine = { line: number; value: unknown } | { line: number; error: string; pointer?: string };

/** The parsed body of an NDJSON request (request.body on the batch route). */
export class NdjsonBody {
  constructor(readonly lines: NdjsonLine[]) {}
}

export const NDJSON_TYPES = ['application/x-ndjson', 'application/jsonl'];

export function registerNdjsonParser(app: FastifyInstance, bodyLimit: number): void {
  app.addContentTypeParser(NDJSON_TYPES, (req, payload, done) => {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1];
    if (charset && !/^utf-?8$/i.test(charset)) {
      done(
        new ProblemError('UNSUPPORTED_MEDIA_TYPE', `charset ${charset} is not supported: send UTF-8`),
        undefined,
      );
      return;
    }
    const lines: NdjsonLine[] = [];
    let pending: Buffer[] = [];
    let received = 0;
    let lineNo = 0;
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      done(err, undefined);
    };
    const take = (line: Buffer) => {
      lineNo++;
      // A byte-order mark may open the body, so the first line (content-type.ts).
      const bytes = lineNo === 1 ? withoutBom(line) : line;
      let end = bytes.length;
      if (end > 0 && bytes[end - 1] === 0x0d) end--;
      const text = bytes.subarray(0, end);
      if (text.every((c) => c === 0x20 || c === 0x09)) return; // blank line
      if (lines.length >= MAX_NDJSON_LINES) {
        fail(new ProblemError('INVALID_REQUEST', `an NDJSON body holds at most ${MAX_NDJSON_LINES} lines`));
        return;
      }
      lines.push(parseLine(lineNo, text));
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > bodyLimit) {
        fail(new ProblemError('BODY_TOO_LARGE', `the body exceeds ${bodyLimit} bytes`));
        return;
      }
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl >= 0 && !failed; nl = chunk.indexOf(0x0a, start)) {
        const part = chunk.subarray(start, nl);
        take(pending.length ? Buffer.concat([...pending, part]) : part);
        pending = [];
        start = nl + 1;
      }
      if (start < chunk.length) pending.push(chunk.subarray(start));
    };
    const onEnd = (err?: Error) => {
      if (err) return fail(err);
      if (pending.length) take(Buffer.concat(pending));
      if (failed) return;
      payload.removeListener('data', onData);
      if (lines.length === 0)
        return done(new ProblemError('INVALID_JSON', 'the NDJSON body holds no lines'), undefined);
      done(null, new NdjsonBody(lines));
    };
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onEnd);
  });
}

function parseLine(line: number, bytes: Buffer): NdjsonLine {
  if (!isUtf8(bytes)) return { line, error: 'the line is not valid UTF-8' };
  const tooComplex = jsonTooComplex(bytes);
  if (tooComplex) return { line, error: tooComplex.replace('the body', 'the line') };
  const text = bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    return { line, error: `the line is not valid JSON${at ? ` (at character ${at})` : ''}` };
  }
  const [huge] = nonFiniteNumbers(text, value, 1);
  return huge === undefined ? { line, value } : { line, error: NON_FINITE_DETAIL, pointer: huge };
}
