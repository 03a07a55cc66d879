import { connect, type Socket } from 'node:net';

/** One HTTP/1.1 response as read off the wire (interim 1xx responses included). */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** ms since the connection was opened. */
  at: number;
}

/**
 * A raw TCP connection speaking HTTP/1.1 by hand, for tests that need what real clients cannot
 * express: headers sent and then nothing, a body trickled byte by byte, a body written after the
 * response, a request pipelined on a connection the server is closing.
 */
export class RawConnection {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private readonly opened = Date.now();
  /** Resolves when the socket closes: `reset` if it was reset (ECONNRESET/EPIPE), else clean. */
  readonly closed: Promise<{ reset: boolean; error?: string; at: number }>;
  /** The server closed its side (FIN). */
  ended = false;

  private constructor(readonly socket: Socket) {
    let error: NodeJS.ErrnoException | undefined;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', (e) => {
      error = e;
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.wake();
        resolve({
          reset: error !== undefined,
          ...(error ? { error: error.code ?? error.message } : {}),
          at: this.elapsed(),
        });
      }),
    );
  }

  /** Every connection opened and not yet closed, so a test can close what a failure left open. */
  static readonly open = new Set<RawConnection>();

  /** Destroys every connection still open (call after each test). */
  static destroyAll(): void {
    for (const c of RawConnection.open) c.destroy();
  }

  static connect(url: string): Promise<RawConnection> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      // Half-open allowed: a FIN from the server does not end this side, as with curl or Python.
      const s = connect({ port: Number(u.port), host: u.hostname, allowHalfOpen: true }, () => {
        s.off('error', reject);
        const c = new RawConnection(s);
        RawConnection.open.add(c);
        s.on('close', () => RawConnection.open.delete(c));
        resolve(c);
      });
      s.once('error', reject);
    });
  }

  elapsed(): number {
    return Date.now() - this.opened;
  }

  /** Writes and waits until the kernel took it; rejects with the socket error (EPIPE, ECONNRESET). */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) return reject(new Error('socket closed'));
      this.socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Half-closes: the client has sent everything. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The next response on the wire, or undefined if the connection ends or `timeoutMs` passes first. */
  async response(timeoutMs = 10_000): Promise<RawResponse | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = this.parse();
      if (parsed) return parsed;
      if (this.ended || this.socket.destroyed || Date.now() > deadline) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private parse(): RawResponse | undefined {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const [statusLine, ...lines] = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const length = status < 200 ? 0 : Number(headers['content-length'] ?? 0);
    if (this.buf.length < end + 4 + length) return undefined;
    const body = this.buf.subarray(end + 4, end + 4 + length).toString('utf8');
    this.buf = this.buf.subarray(end + 4 + length);
    return { status, headers, body, at: this.elapsed() };
  }
}

/** The head of a request (request line and headers, CRLF-terminated). */
export function requestHead(method: string, path: string, headers: Record<string, string | number>): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'host: 127.0.0.1'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}
