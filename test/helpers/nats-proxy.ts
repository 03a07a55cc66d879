import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import type { NatsNode } from '../../harness/nats.ts';

/**
 * A TCP proxy in front of one real nats-server that can freeze the server (SIGSTOP, by its PID) at an
 * exact point of the client's protocol stream: just before the first publish to a given subject is
 * forwarded. That is how a test makes "the publish was sent, its ack never came" happen on cue, after
 * the client's other requests (an Idempotency-Key claim, say) were answered. The server is a real one;
 * the proxy only watches the client's bytes (NATS is a text protocol: `PUB`/`HPUB <subject> …`).
 */
export interface NatsFreezeProxy {
  /** `nats://127.0.0.1:<port>` to give the client instead of the server's URL. */
  url: string;
  /** Freezes the server just before the next publish to `subject` reaches it; resolves when frozen. */
  freezeOnPublish(subject: string): Promise<void>;
  close(): Promise<void>;
}

export async function startFreezeProxy(node: NatsNode): Promise<NatsFreezeProxy> {
  let armed: { needle: string; frozen: () => void } | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(node.port, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let tail = '';
    client.on('data', (chunk: Buffer) => {
      const text = tail + chunk.toString('latin1');
      if (armed && text.includes(armed.needle)) {
        node.signal('SIGSTOP');
        armed.frozen();
        armed = undefined;
      }
      // A subject split across two chunks is still found.
      tail = text.slice(-256);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `nats://127.0.0.1:${port}`,
    freezeOnPublish(subject) {
      return new Promise((resolve) => {
        armed = { needle: `PUB ${subject} `, frozen: resolve };
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
