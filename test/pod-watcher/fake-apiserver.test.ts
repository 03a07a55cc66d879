// The fake API server speaks the protocol the real one does, for what the pod watcher uses. Checked here
// with plain HTTP and with client-node itself (including the watcher's own KubeLeaseLock).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeLeaseLock, LeaseConflictError } from '../../src/pod-watcher/lease-lock.ts';
import { FakeApiServer, kubeconfigFor } from './fake-apiserver.ts';

/** Reads JSON lines from a streaming response as they arrive. */
class LineReader {
  private buffer = '';
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  ended = false;

  constructor(res: Response) {
    this.reader = res.body!.getReader();
  }

  /** The next parsed line, or undefined when the stream ends. Rejects if the connection breaks. */
  async next(): Promise<{ type: string; object: ApiObject } | undefined> {
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        return JSON.parse(line);
      }
      const { value, done } = await this.reader.read();
      if (done) {
        this.ended = true;
        return undefined;
      }
      this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  cancel(): Promise<void> {
    return this.reader.cancel();
  }
}

/** The parts of API objects these tests look at. */
interface ApiObject {
  kind?: string;
  code?: number;
  reason?: string;
  metadata: { name: string; resourceVersion: string };
  spec?: Record<string, unknown>;
  items: ApiObject[];
}

async function json(res: Response): Promise<ApiObject> {
  return (await res.json()) as ApiObject;
}

async function startFake(t: import('node:test').TestContext, opts = {}) {
  const fake = await FakeApiServer.start(opts);
  t.after(() => fake.close());
  return fake;
}

describe('fake Kubernetes API server', () => {
  it('lists pods with a resourceVersion, per namespace or across all', async (t) => {
    const fake = await startFake(t);
    fake.createPod({ namespace: 'a', name: 'p1' });
    fake.createPod({ namespace: 'b', name: 'p2' });
    const all = await json(await fetch(`${fake.url}/api/v1/pods`));
    assert.equal(all.kind, 'PodList');
    assert.equal(all.metadata.resourceVersion, fake.resourceVersion);
    assert.deepEqual(
      all.items.map((p) => p.metadata.name),
      ['p1', 'p2'],
    );
    const inA = await json(await fetch(`${fake.url}/api/v1/namespaces/a/pods`));
    assert.deepEqual(
      inA.items.map((p) => p.metadata.name),
      ['p1'],
    );
  });

  it('streams ADDED, MODIFIED and DELETED events from a resourceVersion as chunked JSON lines', async (t) => {
    const fake = await startFake(t);
    fake.createPod({ namespace: 'a', name: 'before' });
    const rv = fake.resourceVersion;
    fake.createPod({ namespace: 'a', name: 'p' }); // after rv: replayed from history
    const res = await fetch(`${fake.url}/api/v1/namespaces/a/pods?watch=1&resourceVersion=${rv}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('transfer-encoding'), 'chunked');
    const lines = new LineReader(res);
    t.after(() => lines.cancel().catch(() => {}));
    fake.updatePod('a', 'p', (p) => {
      p.status.phase = 'Running';
    });
    fake.createPod({ namespace: 'other', name: 'elsewhere' });
    fake.deletePod('a', 'p');
    const events = [await lines.next(), await lines.next(), await lines.next()];
    assert.deepEqual(
      events.map((e) => [e?.type, e?.object.metadata.name]),
      [
        ['ADDED', 'p'],
        ['MODIFIED', 'p'],
        ['DELETED', 'p'],
      ],
    );
    const rvs = events.map((e) => Number(e?.object.metadata.resourceVersion));
    assert.ok(rvs[0]! > Number(rv) && rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, 'resourceVersions increase');
  });

  it('sends BOOKMARK events only to watches that allow them', async (t) => {
    const fake = await startFake(t);
    const rv = fake.resourceVersion;
    const withBookmarks = new LineReader(
      await fetch(`${fake.url}/api/v1/pods?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`),
    );
    const without = new LineReader(await fetch(`${fake.url}/api/v1/pods?watch=true&resourceVersion=${rv}`));
    fake.sendBookmarks();
    fake.createPod({ namespace: 'a', name: 'p' });
    const first = await withBookmarks.next();
    assert.equal(first?.type, 'BOOKMARK');
    assert.equal(first?.object.metadata.resourceVersion, rv);
    assert.equal((await without.next())?.type, 'ADDED', 'the first event without bookmarks is the pod');
    fake.closeWatches();
    assert.equal((await withBookmarks.next())?.type, 'ADDED');
    assert.equal(await withBookmarks.next(), undefined, 'closeWatches ends the stream cleanly');
  });

  it('answers an expired resourceVersion with 410 Gone, as an ERROR event or as HTTP 410', async (t) => {
    const fake = await startFake(t);
    const rv = fake.resourceVersion;
    const open = new LineReader(await fetch(`${fake.url}/api/v1/pods?watch=true&resourceVersion=${rv}`));
    fake.expireHistory();
    const error = await open.next();
    assert.equal(error?.type, 'ERROR');
    assert.equal(error?.object.kind, 'Status');
    assert.equal(error?.object.code, 410);
    assert.equal(error?.object.reason, 'Expired');
    assert.equal(await open.next(), undefined, 'the watch is closed after the ERROR');

    const again = new LineReader(await fetch(`${fake.url}/api/v1/pods?watch=true&resourceVersion=${rv}`));
    assert.equal((await again.next())?.object.code, 410);

    fake.goneAs = 'http';
    const res = await fetch(`${fake.url}/api/v1/pods?watch=true&resourceVersion=${rv}`);
    assert.equal(res.status, 410);
    assert.equal((await json(res)).code, 410);
    assert.equal(fake.counts.gone, 2);
  });

  it('can reset watch connections mid-stream', async (t) => {
    const fake = await startFake(t);
    const lines = new LineReader(
      await fetch(`${fake.url}/api/v1/pods?watch=true&resourceVersion=${fake.resourceVersion}`),
    );
    await new Promise((r) => setImmediate(r));
    assert.equal(fake.dropWatches(), 1);
    await assert.rejects(lines.next(), 'the client sees a broken stream, not a clean end');
  });

  it('stores Leases with create (409 AlreadyExists) and optimistic replace (409 Conflict)', async (t) => {
    const fake = await startFake(t);
    const url = `${fake.url}/apis/coordination.k8s.io/v1/namespaces/ns/leases`;
    const time = '2026-01-01T00:00:00.000000Z';
    const body = { metadata: { name: 'l' }, spec: { holderIdentity: 'a', renewTime: time } };
    const post = (b: unknown) =>
      fetch(url, {
        method: 'POST',
        body: JSON.stringify(b),
        headers: { 'content-type': 'application/json' },
      });
    const put = (b: unknown) =>
      fetch(`${url}/l`, {
        method: 'PUT',
        body: JSON.stringify(b),
        headers: { 'content-type': 'application/json' },
      });

    assert.equal((await fetch(`${url}/l`)).status, 404);
    const created = await post(body);
    assert.equal(created.status, 201);
    const lease = await json(created);
    const again = await post(body);
    assert.equal(again.status, 409);
    assert.equal((await json(again)).reason, 'AlreadyExists');

    const updated = await put({ ...lease, spec: { ...lease.spec, holderIdentity: 'b' } });
    assert.equal(updated.status, 200);
    const v2 = await json(updated);
    assert.ok(Number(v2.metadata.resourceVersion) > Number(lease.metadata.resourceVersion));
    const stale = await put({ ...lease, spec: { ...lease.spec, holderIdentity: 'c' } });
    assert.equal(stale.status, 409);
    assert.equal((await json(stale)).reason, 'Conflict');
    assert.equal(fake.lease('ns', 'l')?.spec?.holderIdentity, 'b');

    const millis = await put({ ...v2, spec: { ...v2.spec, renewTime: '2026-01-01T00:00:00.000Z' } });
    assert.equal(millis.status, 400, 'MicroTime needs six fractional digits, as on a real API server');
  });

  it('works with client-node and the watcher’s KubeLeaseLock (http:// needs skipTLSVerify)', async (t) => {
    const fake = await startFake(t);
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigFor(fake.url, 'test'));
    const lock = new KubeLeaseLock(kc, 'ns', 'lock');
    const signal = AbortSignal.timeout(5000);
    assert.equal(await lock.get(signal), null);
    const record = {
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      acquireTime: new Date().toISOString(),
      renewTime: new Date().toISOString(),
      leaseTransitions: 0,
    };
    const created = await lock.create(record, signal);
    assert.match(created.record.renewTime, /\.\d{6}Z$/);
    await assert.rejects(lock.create(record, signal), LeaseConflictError);
    const renewed = await lock.update(
      created,
      { ...created.record, renewTime: new Date().toISOString() },
      signal,
    );
    assert.notEqual(renewed.resourceVersion, created.resourceVersion);
    await assert.rejects(lock.update(created, created.record, signal), LeaseConflictError);
    assert.equal((await lock.get(signal))?.record.holderIdentity, 'a');

    const insecure = new KubeConfig();
    insecure.loadFromString(
      kubeconfigFor(fake.url, 'test').replace('"insecure-skip-tls-verify":true', '"x":1'),
    );
    await assert.rejects(
      new KubeLeaseLock(insecure, 'ns', 'lock').get(signal),
      /HTTP protocol is not allowed/,
    );
  });

  it('can freeze one client: its requests hang until it is unfrozen', async (t) => {
    const fake = await startFake(t);
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigFor(fake.url, 'frozen'));
    const lock = new KubeLeaseLock(kc, 'ns', 'lock');
    fake.freeze('frozen');
    await assert.rejects(lock.get(AbortSignal.timeout(300)), { name: 'AbortError' });
    fake.unfreeze('frozen');
    assert.equal(await lock.get(AbortSignal.timeout(5000)), null);
  });
});
