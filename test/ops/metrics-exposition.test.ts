import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import { needTool } from '../deploy/tools.ts';
import { startTestApp } from '../helpers/app.ts';
import { startCluster } from '../pod-watcher/replicas.ts';

/**
 * The /metrics exposition of every process intake ships passes `promtool check metrics` (Prometheus's
 * own linter: names, suffixes, types, help texts). Checked on what the processes really serve after some
 * traffic, so labelled series are present: an API+worker process, and a pod watcher replica that leads
 * and has logged a pod.
 */

/** `promtool check metrics` on `text`: its complaints ('' when clean) and exit code. */
function promtoolCheck(text: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out: out.trim() }));
    p.stdin.end(text);
  });
}

describe('promtool check metrics on the real expositions', { skip: needTool('promtool') }, () => {
  test('the checker itself flags a gauge named like a counter (the control)', async () => {
    const r = await promtoolCheck('# HELP x_total A gauge.\n# TYPE x_total gauge\nx_total 1\n');
    assert.notEqual(r.code, 0);
    assert.match(r.out, /x_total non-counter metrics should not have "_total" suffix/);
  });

  test('intake (API and worker) after ingest traffic', async () => {
    const app = await startTestApp('promtool_metrics');
    try {
      const ok = await app.post('/v1/messages', { ts: 1530228282, sender: 'promtool', message: { a: 1 } });
      assert.equal(ok.status, 202);
      const bad = await app.post('/v1/messages', { ts: -1, sender: 'promtool', message: { a: 1 } });
      assert.equal(bad.status, 400);
      await Promise.all([ok.arrayBuffer(), bad.arrayBuffer()]);
      let text = '';
      await waitFor('the message stored and counted', async () => {
        text = await (await fetch(`${app.url}/metrics`)).text();
        return /^intake_messages_stored_total [1-9]/m.test(text);
      });
      assert.match(text, /^nodejs_active_handles\{type="[^"]+"\} \d+$/m, 'the by-type gauges stay');
      assert.match(text, /^intake_messages_rejected_total\{reason="invalid"\} 1$/m);
      const r = await promtoolCheck(text);
      assert.deepEqual(r, { code: 0, out: '' });
    } finally {
      await app.close();
    }
  });

  test('the pod watcher, leading, after it logged a pod', async (t) => {
    const c = await startCluster(t, 1);
    const leader = await c.leader();
    c.fake.createPod({ namespace: 'shop', name: 'web-1' });
    await waitFor('the pod to be logged', () => leader.loggedPods().includes('shop/web-1'));
    const port = await leader.metricsPort();
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(text, /^pod_watcher_pods_created_total\{namespace="shop",replica="r0"\} 1$/m);
    const r = await promtoolCheck(text);
    assert.deepEqual(r, { code: 0, out: '' });
  });
});
