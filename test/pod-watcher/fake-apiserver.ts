// A fake Kubernetes API server for the pod watcher's tests. It speaks the real protocol over plain HTTP on
// 127.0.0.1 (port 0), for the few endpoints the watcher uses:
//
//   GET  /api/v1/pods, /api/v1/namespaces/{ns}/pods         list (metadata.resourceVersion) or, with
//        ?watch=true|1, a chunked JSON-lines watch from ?resourceVersion (ADDED/MODIFIED/DELETED, BOOKMARK
//        when ?allowWatchBookmarks=true, ?timeoutSeconds); a resourceVersion older than the retained
//        history gets 410 Gone, as an ERROR event carrying a Status (what a real API server sends) or,
//        with `goneAs: 'http'`, as an HTTP 410.
//   GET|POST /apis/coordination.k8s.io/v1/namespaces/{ns}/leases        (POST: 409 AlreadyExists)
//   GET|PUT  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name} (PUT: 409 Conflict if stale)
//
// One resourceVersion counter for everything, incremented on every write, like etcd's revision. Lease
// MicroTime fields must have six fractional digits, as the real server insists.
//
// Test-side controls: createPod/updatePod/deletePod, expireHistory (force 410), dropWatches (reset the
// connections) / closeWatches (clean end), sendBookmarks, freeze(token) (requests from that client hang and
// its watches go silent, like a network partition), and counters of what was asked.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A pod as JSON, shaped like the API server's. */
export interface PodJson {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    creationTimestamp: string;
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  };
  spec: { nodeName?: string; containers: { name: string; image: string }[] };
  status: { phase: string };
}

/** What a test may say about a pod it creates. */
export interface NewPod {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  nodeName?: string;
  images?: string[];
  owner?: { kind: string; name: string };
  /** Override creationTimestamp (default: now, truncated to the second as the API server does). */
  createdAt?: Date;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  type: EventType;
  object: PodJson;
}

interface WatchConn {
  res: ServerResponse;
  namespace: string | undefined;
  token: string;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
}

interface LeaseJson {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  spec?: Record<string, unknown>;
}

/** Options of the fake. */
export interface FakeApiServerOptions {
  /** How an expired resourceVersion is answered: an ERROR event in a 200 stream (default) or HTTP 410. */
  goneAs?: 'event' | 'http';
}

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;

function status(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function rfc3339Seconds(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
}

/** The fake API server. Start with FakeApiServer.start(); close() when done. */
export class FakeApiServer {
  /** Base URL, e.g. http://127.0.0.1:41234. */
  url = '';
  private readonly server: Server;
  /** How an expired resourceVersion is answered (see FakeApiServerOptions); may be changed by a test. */
  goneAs: 'event' | 'http';
  private rv = 1;
  /** Watches from a resourceVersion below this get 410 Gone. */
  private oldestRv = 0;
  private readonly pods = new Map<string, PodJson>();
  private history: HistoryEvent[] = [];
  private readonly watches = new Set<WatchConn>();
  private readonly leases = new Map<string, LeaseJson>();
  /** Every Lease as written, in order, for assertions about who held it when. */
  readonly leaseHistory: LeaseJson[] = [];
  private readonly frozen = new Set<string>();
  private readonly held = new Set<ServerResponse>();
  /** Requests served, by kind, for assertions. */
  readonly counts = { lists: 0, watches: 0, gone: 0, leaseGets: 0, leaseWrites: 0, conflicts: 0 };

  private constructor(opts: FakeApiServerOptions) {
    this.goneAs = opts.goneAs ?? 'event';
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.send(res, 500, status(500, 'InternalError', String(err)));
      });
    });
  }

  /** Starts a fake on 127.0.0.1 and a free port. */
  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const fake = new FakeApiServer(opts);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** The current resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Number of open watch connections (optionally of one client token). */
  openWatches(token?: string): number {
    let n = 0;
    for (const w of this.watches) if (token === undefined || w.token === token) n++;
    return n;
  }

  // ---- pods --------------------------------------------------------------------------------------------

  createPod(p: NewPod): PodJson {
    const key = `${p.namespace}/${p.name}`;
    if (this.pods.has(key)) throw new Error(`pod ${key} already exists`);
    const pod: PodJson = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: p.name,
        namespace: p.namespace,
        uid: randomUUID(),
        resourceVersion: String(++this.rv),
        creationTimestamp: rfc3339Seconds(p.createdAt ?? new Date()),
        ...(p.labels ? { labels: p.labels } : {}),
        ...(p.owner
          ? {
              ownerReferences: [
                {
                  apiVersion: 'apps/v1',
                  kind: p.owner.kind,
                  name: p.owner.name,
                  uid: randomUUID(),
                  controller: true,
                },
              ],
            }
          : {}),
      },
      spec: {
        ...(p.nodeName ? { nodeName: p.nodeName } : {}),
        containers: (p.images ?? ['busybox:1.36']).map((image, i) => ({ name: `c${i}`, image })),
      },
      status: { phase: 'Pending' },
    };
    this.pods.set(key, pod);
    this.emit('ADDED', pod);
    return pod;
  }

  updatePod(namespace: string, name: string, change: (pod: PodJson) => void): PodJson {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) throw new Error(`pod ${namespace}/${name} not found`);
    const next = structuredClone(pod);
    change(next);
    next.metadata.resourceVersion = String(++this.rv);
    this.pods.set(`${namespace}/${name}`, next);
    this.emit('MODIFIED', next);
    return next;
  }

  deletePod(namespace: string, name: string): void {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) throw new Error(`pod ${namespace}/${name} not found`);
    this.pods.delete(`${namespace}/${name}`);
    const gone = structuredClone(pod);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit('DELETED', gone);
  }

  // ---- controls ----------------------------------------------------------------------------------------

  /**
   * Compacts history, as etcd does: every resourceVersion handed out so far becomes too old. Open watches
   * get an ERROR event with a 410 Status and are closed (unless `notifyWatches` is false: then they stay
   * open, and the 410 comes when the client next watches from its old resourceVersion).
   */
  expireHistory({ notifyWatches = true } = {}): void {
    this.rv++;
    this.oldestRv = this.rv;
    this.history = [];
    if (!notifyWatches) return;
    for (const w of [...this.watches]) {
      this.writeEvent(w, { type: 'ERROR', object: this.goneStatus() });
      this.endWatch(w);
    }
  }

  /** Resets every open watch connection (the client sees an error mid-stream). */
  dropWatches(): number {
    const n = this.watches.size;
    for (const w of [...this.watches]) {
      this.forget(w);
      w.res.socket?.destroy();
    }
    return n;
  }

  /** Ends every open watch cleanly, as the API server does when a watch times out. */
  closeWatches(): number {
    const n = this.watches.size;
    for (const w of [...this.watches]) this.endWatch(w);
    return n;
  }

  /** Sends a BOOKMARK with the current resourceVersion to watches that asked for bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watches) {
      if (w.bookmarks && !this.frozen.has(w.token)) {
        this.writeEvent(w, {
          type: 'BOOKMARK',
          object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } },
        });
      }
    }
  }

  /** Partitions a client (by bearer token): its requests hang unanswered and its watches go silent. */
  freeze(token: string): void {
    this.frozen.add(token);
  }

  /** Heals a partition: connections held or watched during it are reset, as a broken TCP path would be. */
  unfreeze(token: string): void {
    this.frozen.delete(token);
    for (const res of [...this.held]) {
      if ((res as ServerResponse & { token?: string }).token === token) {
        this.held.delete(res);
        res.socket?.destroy();
      }
    }
    for (const w of [...this.watches]) {
      if (w.token === token) {
        this.forget(w);
        w.res.socket?.destroy();
      }
    }
  }

  /** The stored Lease, or undefined. */
  lease(namespace: string, name: string): LeaseJson | undefined {
    const l = this.leases.get(`${namespace}/${name}`);
    return l ? structuredClone(l) : undefined;
  }

  /** Stops the server and resets every connection. */
  async close(): Promise<void> {
    for (const w of [...this.watches]) this.forget(w);
    for (const res of this.held) res.socket?.destroy();
    this.held.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- protocol ----------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const token = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
    if (this.frozen.has(token)) {
      (res as ServerResponse & { token?: string }).token = token;
      this.held.add(res);
      res.on('close', () => this.held.delete(res));
      return;
    }
    const path = url.pathname.replace(/\/+$/, '');

    const pods = path.match(/^\/api\/v1(?:\/namespaces\/([^/]+))?\/pods$/);
    if (pods && req.method === 'GET') {
      const namespace = pods[1] ? decodeURIComponent(pods[1]) : undefined;
      const watch = url.searchParams.get('watch');
      if (watch === 'true' || watch === '1') return this.watch(res, url, namespace, token);
      return this.list(res, namespace);
    }
    const leases = path.match(
      /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/,
    );
    if (leases) {
      const namespace = decodeURIComponent(leases[1]!);
      const name = leases[2] ? decodeURIComponent(leases[2]) : undefined;
      return this.leaseRequest(req, res, namespace, name);
    }
    this.send(
      res,
      404,
      status(404, 'NotFound', `the server could not find the requested resource (${path})`),
    );
  }

  private list(res: ServerResponse, namespace: string | undefined): void {
    this.counts.lists++;
    const items = [...this.pods.values()]
      .filter((p) => namespace === undefined || p.metadata.namespace === namespace)
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
    this.send(res, 200, {
      kind: 'PodList',
      apiVersion: 'v1',
      metadata: { resourceVersion: String(this.rv) },
      items,
    });
  }

  private watch(res: ServerResponse, url: URL, namespace: string | undefined, token: string): void {
    this.counts.watches++;
    const rvParam = url.searchParams.get('resourceVersion') ?? '';
    const from = rvParam === '' || rvParam === '0' ? undefined : Number(rvParam);
    if (from !== undefined && (!Number.isInteger(from) || from < this.oldestRv)) {
      this.counts.gone++;
      if (this.goneAs === 'http') {
        this.send(res, 410, this.goneStatus(rvParam));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: this.goneStatus(rvParam) })}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: WatchConn = {
      res,
      namespace,
      token,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
    };
    this.watches.add(w);
    res.on('close', () => this.forget(w));
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    if (timeout > 0) w.timer = setTimeout(() => this.endWatch(w), timeout * 1000);

    if (from === undefined) {
      // "Start at most recent": the current state as synthetic ADDED events, then changes.
      for (const pod of this.pods.values()) {
        if (namespace === undefined || pod.metadata.namespace === namespace) {
          this.writeEvent(w, { type: 'ADDED', object: pod });
        }
      }
    } else {
      for (const ev of this.history) {
        if (ev.rv > from && (namespace === undefined || ev.object.metadata.namespace === namespace)) {
          this.writeEvent(w, { type: ev.type, object: ev.object });
        }
      }
    }
  }

  private async leaseRequest(
    req: IncomingMessage,
    res: ServerResponse,
    namespace: string,
    name: string | undefined,
  ): Promise<void> {
    const key = `${namespace}/${name}`;
    if (req.method === 'GET' && name) {
      this.counts.leaseGets++;
      const lease = this.leases.get(key);
      if (!lease) {
        this.send(res, 404, status(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`));
      } else {
        this.send(res, 200, lease);
      }
      return;
    }
    if (req.method === 'POST' && !name) {
      const body = (await readBody(req)) as LeaseJson;
      const bodyName = body?.metadata?.name;
      const invalid = this.invalidLease(body);
      if (!bodyName || invalid) {
        this.send(res, 400, status(400, 'BadRequest', invalid ?? 'metadata.name is required'));
        return;
      }
      this.counts.leaseWrites++;
      if (this.leases.has(`${namespace}/${bodyName}`)) {
        this.counts.conflicts++;
        this.send(
          res,
          409,
          status(409, 'AlreadyExists', `leases.coordination.k8s.io "${bodyName}" already exists`),
        );
        return;
      }
      const stored: LeaseJson = {
        ...body,
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          ...body.metadata,
          namespace,
          uid: randomUUID(),
          resourceVersion: String(++this.rv),
          creationTimestamp: rfc3339Seconds(new Date()),
        },
      };
      this.leases.set(`${namespace}/${bodyName}`, stored);
      this.leaseHistory.push(structuredClone(stored));
      this.send(res, 201, stored);
      return;
    }
    if (req.method === 'PUT' && name) {
      const body = (await readBody(req)) as LeaseJson;
      const invalid = this.invalidLease(body);
      if (invalid || body.metadata.name !== name) {
        this.send(res, 400, status(400, 'BadRequest', invalid ?? 'name in body does not match the URL'));
        return;
      }
      this.counts.leaseWrites++;
      const current = this.leases.get(key);
      if (!current) {
        this.send(res, 404, status(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`));
        return;
      }
      if (!body.metadata.resourceVersion) {
        this.send(
          res,
          422,
          status(422, 'Invalid', 'metadata.resourceVersion: must be specified for an update'),
        );
        return;
      }
      if (body.metadata.resourceVersion !== current.metadata.resourceVersion) {
        this.counts.conflicts++;
        this.send(
          res,
          409,
          status(
            409,
            'Conflict',
            `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been ` +
              'modified; please apply your changes to the latest version and try again',
          ),
        );
        return;
      }
      const stored: LeaseJson = {
        ...body,
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          ...current.metadata,
          labels: body.metadata.labels,
          annotations: body.metadata.annotations,
          resourceVersion: String(++this.rv),
        },
      };
      this.leases.set(key, stored);
      this.leaseHistory.push(structuredClone(stored));
      this.send(res, 200, stored);
      return;
    }
    this.send(res, 405, status(405, 'MethodNotAllowed', `${req.method} is not supported here`));
  }

  /** What the real API server would reject in a Lease body, or undefined. */
  private invalidLease(body: LeaseJson | null): string | undefined {
    if (!body || typeof body !== 'object' || !body.metadata) return 'body must be a Lease';
    for (const field of ['acquireTime', 'renewTime']) {
      const v = body.spec?.[field];
      if (v !== undefined && v !== null && !(typeof v === 'string' && MICRO_TIME.test(v))) {
        return `parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": spec.${field}`;
      }
    }
    return undefined;
  }

  private goneStatus(rv?: string) {
    return status(410, 'Expired', `too old resource version: ${rv ?? '?'} (${this.oldestRv})`);
  }

  private emit(type: EventType, object: PodJson): void {
    const ev: HistoryEvent = { rv: Number(object.metadata.resourceVersion), type, object };
    this.history.push(ev);
    for (const w of this.watches) {
      if (w.namespace === undefined || w.namespace === object.metadata.namespace) {
        this.writeEvent(w, { type, object });
      }
    }
  }

  private writeEvent(w: WatchConn, ev: { type: string; object: unknown }): void {
    if (this.frozen.has(w.token)) return;
    w.res.write(`${JSON.stringify(ev)}\n`);
  }

  private endWatch(w: WatchConn): void {
    this.forget(w);
    w.res.end();
  }

  private forget(w: WatchConn): void {
    clearTimeout(w.timer);
    this.watches.delete(w);
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
}

/** A kubeconfig (JSON is valid YAML) pointing at `url`; client-node needs skipTLSVerify for http://. */
export function kubeconfigFor(url: string, token: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: token, user: { token } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: token, namespace: 'default' } }],
    'current-context': 'fake',
  });
}
