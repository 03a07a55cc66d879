import { type Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProblemError } from './problem.ts';

/**
 * Request bodies sent with `Content-Encoding: gzip | deflate | br | zstd` are decompressed as a stream,
 * before parsing. The DECOMPRESSED size is held to the body limit: Fastify counts the bytes this stream
 * yields and stops at the limit (413), and the stream refuses to inflate past it by itself, so a
 * 512 MiB gzip bomb costs a few milliseconds and no memory. The encoded bytes are counted too
 * (`receivedEncodedLength`), which Fastify compares with Content-Length.
 *
 * Why not @fastify/compress's decompression: it joins request and inflater with stream.pipeline, so an
 * early refusal destroys the request stream, and with it the socket, and the client sees a reset
 * instead of the 413 (http/unread-bodies.ts reads the rest away instead). Response compression is not
 * done here: intake's answers are small; a proxy compresses large GET pages better.
 */

type Decoder = () => Transform;

const decoders: Record<string, Decoder> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  // RFC 9110 "deflate" is the zlib format; some clients send raw deflate: decode() looks at the first
  // two bytes (zlib's CMF/FLG header) and picks the raw inflater when they are not a zlib header.
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
  // Node >= 22.15 / 23.8 has zstd; on older runtimes it is refused with 415 like any unknown encoding.
  ...(typeof (zlib as { createZstdDecompress?: () => Transform }).createZstdDecompress === 'function'
    ? { zstd: () => (zlib as unknown as { createZstdDecompress: () => Transform }).createZstdDecompress() }
    : {}),
};

/** The encodings this runtime can read, as an Accept-Encoding value (sent with a 415). */
export const ACCEPTED_ENCODINGS = ['identity', ...Object.keys(decoders).filter((e) => e !== 'x-gzip')].join(
  ', ',
);

/** Adds the decompressing preParsing hook to every route that has a body. */
export function registerContentEncoding(app: FastifyInstance, bodyLimit: number): void {
  app.addHook('preParsing', async (req: FastifyRequest, reply, payload) => {
    const header = req.headers['content-encoding'];
    if (header === undefined) return payload;
    const encoding = header.trim().toLowerCase();
    if (encoding === '' || encoding === 'identity') return payload;
    // No body to decode (a GET with the header, an empty POST): the header describes nothing.
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return payload;
    const decoder = decoders[encoding];
    if (!decoder) {
      reply.header('accept-encoding', ACCEPTED_ENCODINGS);
      throw new ProblemError(
        'UNSUPPORTED_ENCODING',
        encoding.includes(',')
          ? 'send at most one Content-Encoding'
          : `Content-Encoding ${encoding.slice(0, 40)} is not supported: send ${ACCEPTED_ENCODINGS}`,
      );
    }
    let inflater = decoder();
    if (encoding === 'deflate') {
      const first = await firstChunk(payload);
      if (first && !isZlibHeader(first)) inflater = zlib.createInflateRaw();
      if (first) (payload as unknown as Readable).unshift(first);
    }
    return decode(payload, inflater, bodyLimit, encoding);
  });
}

/** The first chunk of a stream, without consuming it for good (the caller unshifts it back). */
function firstChunk(stream: NodeJS.ReadableStream): Promise<Buffer | null> {
  const r = stream as unknown as Readable;
  return new Promise((resolve, reject) => {
    const done = () => {
      r.off('readable', done);
      r.off('end', done);
      r.off('error', reject);
      resolve(r.read() as Buffer | null);
    };
    r.on('readable', done);
    r.on('end', done);
    r.on('error', reject);
  });
}

function isZlibHeader(b: Buffer): boolean {
  return b.length >= 2 && (b[0]! & 0x0f) === 8 && ((b[0]! << 8) | b[1]!) % 31 === 0;
}

/**
 * Feeds `payload` (the request stream) through `inflater`, stopping at `limit` decompressed bytes.
 * Returns the stream Fastify parses. The request stream is only unpiped, never destroyed: what is left
 * of it is the business of the connection handling, which keeps the connection alive for the answer.
 */
function decode(
  payload: NodeJS.ReadableStream,
  inflater: Transform,
  limit: number,
  encoding: string,
): Transform & { receivedEncodedLength: number } {
  let produced = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      produced += chunk.length;
      if (produced > limit) {
        done(tooLarge(limit));
        return;
      }
      done(null, chunk);
    },
  }) as Transform & { receivedEncodedLength: number };
  out.receivedEncodedLength = 0;
  // The body parser listens for errors only once it reads the body; a request answered before that (a
  // GET, a 415, a refusal in a hook) must not turn a corrupt body into an uncaught 'error' (a crash).
  out.on('error', () => {});
  const count = (chunk: Buffer) => {
    out.receivedEncodedLength += chunk.length;
  };
  payload.on('data', count);
  inflater.on('error', (err: Error & { code?: string }) => {
    out.destroy(
      new ProblemError(
        'INVALID_REQUEST',
        `the body is not valid ${encoding} data (${err.code ?? 'corrupt'})`,
      ),
    );
  });
  out.on('close', () => {
    payload.removeListener('data', count);
    payload.unpipe(inflater);
    inflater.destroy();
  });
  payload.pipe(inflater).pipe(out);
  return out;
}

function tooLarge(limit: number): ProblemError {
  return new ProblemError('BODY_TOO_LARGE', `the decompressed body exceeds ${limit} bytes`);
}
