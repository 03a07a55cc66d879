import { Agent, request } from 'node:http';

/** Result of a bounded load run: what each request got. */
export interface LoadResult {
  accepted: string[];
  statuses: Map<number, number>;
  networkErrors: number;
  sent: number;
}

/** One POST over a keep-alive agent; resolves with status and body, rejects on a network error. */
export function postJson(
  url: string,
  path: string,
  body: unknown,
  agent: Agent,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
          ...headers,
        },
        timeout: 30_000,
      },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          buf += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: buf }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

/**
 * Posts valid messages from `concurrency` keep-alive clients until `stop()` is called or `maxRequests`
 * were sent (bounded in count and time; loopback only). Records the id of every 202.
 */
export function startLoad(
  url: string,
  opts: { concurrency: number; maxRequests: number; sender?: string; headers?: Record<string, string> },
) {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const result: LoadResult = { accepted: [], statuses: new Map(), networkErrors: 0, sent: 0 };
  let stopped = false;
  const pause = () => new Promise((r) => setTimeout(r, 20));
  const client = async (c: number) => {
    while (!stopped && result.sent < opts.maxRequests) {
      result.sent++;
      try {
        const res = await postJson(
          url,
          '/v1/messages',
          {
            ts: 1530228282,
            sender: opts.sender ?? 'load',
            message: { c, n: result.sent },
          },
          agent,
          opts.headers,
        );
        result.statuses.set(res.status, (result.statuses.get(res.status) ?? 0) + 1);
        if (res.status === 202) result.accepted.push((JSON.parse(res.body) as { id: string }).id);
        else await pause();
      } catch {
        result.networkErrors++;
        await pause();
      }
    }
  };
  const running = Promise.all(Array.from({ length: opts.concurrency }, (_, c) => client(c)));
  return {
    result,
    async stop(): Promise<LoadResult> {
      stopped = true;
      await running;
      agent.destroy();
      return result;
    },
  };
}
