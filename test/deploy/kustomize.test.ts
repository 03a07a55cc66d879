import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { commandNamed } from '../../src/commands/registry.ts';
import { loadConfig } from '../../src/config.ts';
import {
  type K8sObject,
  kustomize,
  OVERLAYS,
  overlayDir,
  parseManifests,
  ref,
  renderOverlay,
} from './k8s-render.ts';
import { StrictSchema } from './k8s-schema.ts';
import { needTool, REPO } from './tools.ts';

const skip = needTool('kubectl', ['version', '--client']);
const run = promisify(execFile);

describe('kustomize overlays render and match the Kubernetes schema strictly', { skip }, () => {
  const rendered = new Map<string, K8sObject[]>();
  let schema: StrictSchema;

  before(async () => {
    for (const overlay of OVERLAYS)
      rendered.set(overlay, parseManifests(await kustomize(overlayDir(overlay))));
    schema = StrictSchema.load([...rendered.values()].flat());
  });

  test('the base renders on its own', async () => {
    const objects = parseManifests(await kustomize(join(REPO, 'deploy/k8s/base')));
    assert.ok(objects.length > 20, `only ${objects.length} objects`);
  });

  for (const overlay of OVERLAYS) {
    test(`${overlay}: renders, every object is namespaced into the overlay's namespace`, () => {
      const objects = rendered.get(overlay)!;
      const kinds = new Set(objects.map((o) => o.kind));
      for (const k of ['Deployment', 'StatefulSet', 'Job', 'Service', 'Ingress', 'HorizontalPodAutoscaler']) {
        assert.ok(kinds.has(k), `${overlay} renders no ${k}`);
      }
      const ns = objects.find((o) => o.kind === 'Namespace')!.metadata.name;
      const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);
      for (const o of objects.filter((x) => !clusterScoped.has(x.kind))) {
        assert.equal(o.metadata.namespace, ns, `${ref(o)} is not in namespace ${ns}`);
      }
    });

    test(`${overlay}: every object validates, unknown fields rejected`, () => {
      const problems = rendered.get(overlay)!.flatMap((o) => schema.validate(o));
      assert.deepEqual(problems, []);
    });
  }

  test('negative: a misspelled readinessProbe is reported (kubernetes-models alone accepts it)', () => {
    const d = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'Deployment')!);
    const c = d.spec.template.spec.containers[0];
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
    const problems = schema.validate(d);
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]!.path, '/spec/template/spec/containers/0/readinesProbe');
    assert.match(problems[0]!.message, /unknown field "readinesProbe"/);
  });

  test('negative: type errors and typos deep inside a StatefulSet are reported', () => {
    const s = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'StatefulSet')!);
    s.spec.replicas = 'three';
    s.spec.volumeClaimTemplates[0].spec.accesModes = ['ReadWriteOnce'];
    const paths = schema.validate(s).map((p) => `${p.path} ${p.message}`);
    assert.ok(
      paths.some((p) => /replicas must be integer/.test(p)),
      paths.join('\n'),
    );
    assert.ok(
      paths.some((p) => p.startsWith('/spec/volumeClaimTemplates/0/spec/accesModes ')),
      paths.join('\n'),
    );
  });

  test('negative: a typo in the CloudNativePG Cluster (hand-kept CRD shape) is reported', () => {
    const c = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'Cluster')!);
    c.spec.instance = 3;
    c.spec.topologySpreadConstraints[0].whenUnsatisfable = 'DoNotSchedule';
    const paths = schema.validate(c).map((p) => p.path);
    assert.deepEqual(paths.sort(), ['/spec/instance', '/spec/topologySpreadConstraints/0/whenUnsatisfable']);
  });

  test('negative: a typo in a ServiceMonitor endpoint is reported', () => {
    const m = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'ServiceMonitor')!);
    m.spec.endpoints[0].intervall = '30s';
    assert.deepEqual(
      schema.validate(m).map((p) => p.path),
      ['/spec/endpoints/0/intervall'],
    );
  });

  test("negative: the PodMonitor is checked against prometheus-operator's CRD schema", () => {
    const m = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'PodMonitor')!);
    m.spec.podMetricsEndpoints[0].intervall = '30s';
    m.spec.podMetricsEndpoints[0].port = 9187; // the CRD says a port name (string)
    delete m.spec.selector; // required by the CRD
    const problems = schema.validate(m).map((p) => `${p.path} ${p.message}`);
    assert.ok(
      problems.some((p) => p.startsWith('/spec/podMetricsEndpoints/0/intervall unknown field')),
      problems.join('\n'),
    );
    assert.match(problems.join('\n'), /port.*must be string/);
    assert.match(problems.join('\n'), /must have required property selector/);
  });

  test('negative: a typo in a PrometheusRule rule is reported', () => {
    const r = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'PrometheusRule')!);
    r.spec.groups[0].rules[0].anotations = {};
    assert.deepEqual(
      schema.validate(r).map((p) => p.path),
      ['/spec/groups/0/rules/0/anotations'],
    );
  });

  test('negative: a typo in a cert-manager Certificate is reported', () => {
    const c = structuredClone(rendered.get('prod')!.find((o) => o.kind === 'Certificate')!);
    c.spec.dnsName = c.spec.dnsNames;
    c.spec.privateKey.algoritm = 'RSA';
    assert.deepEqual(
      schema
        .validate(c)
        .map((p) => p.path)
        .sort(),
      ['/spec/dnsName', '/spec/privateKey/algoritm'],
    );
  });

  test('negative: a kind with no schema is reported rather than passed', () => {
    const problems = schema.validate({
      apiVersion: 'example.com/v1',
      kind: 'Widget',
      metadata: { name: 'w' },
    });
    assert.match(problems[0]!.message, /unknown kind example.com\/v1\/Widget/);
  });
});

/**
 * Issue 22 item 7: each overlay bounds intake's stream (NATS_MAX_BYTES), below the JetStream store
 * (`max_file_store`), below the NATS volume. Without the stream limit the stream grows until the store
 * refuses every write, and IntakeQueueStreamNearFull, which divides by the limit intake exports, has no
 * series and can never fire.
 */
describe('the NATS stream limit fits its store, and the store its volume', { skip }, () => {
  const rendered = new Map<string, K8sObject[]>();
  before(async () => {
    for (const overlay of OVERLAYS) rendered.set(overlay, await renderOverlay(overlay));
  });

  /** The three sizes an overlay sets, in bytes, each parsed with its own reader's units. */
  function sizes(overlay: string) {
    const objects = rendered.get(overlay)!;
    const configMap = (prefix: string) => {
      const found = objects.filter((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith(`${prefix}-`));
      assert.equal(found.length, 1, `${overlay}: one ConfigMap ${prefix}`);
      return found[0]!.data as Record<string, string>;
    };
    const limit = configMap('intake-config').NATS_MAX_BYTES;
    assert.ok(limit, `${overlay}: NATS_MAX_BYTES is set in intake-config`);
    const kvLimit = configMap('intake-config').NATS_IDEMPOTENCY_MAX_BYTES;
    assert.ok(kvLimit, `${overlay}: NATS_IDEMPOTENCY_MAX_BYTES is set in intake-config`);
    // Read as intake reads them.
    const { maxBytes: streamBytes, idempotencyMaxBytes: kvBytes } = loadConfig(
      { NATS_URL: 'nats://nats:4222', NATS_MAX_BYTES: limit, NATS_IDEMPOTENCY_MAX_BYTES: kvLimit },
      commandNamed('api'),
    ).nats;
    const conf = configMap('nats-config')['jetstream-limits.conf'] ?? '';
    const store = /^\s*max_file_store:\s*(\S+)\s*$/m.exec(conf)?.[1];
    assert.ok(store, `${overlay}: max_file_store in jetstream-limits.conf`);
    const nats = objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'nats')!;
    const volume = nats.spec.volumeClaimTemplates[0].spec.resources.requests.storage as string;
    return {
      namespace: objects.find((o) => o.kind === 'Namespace')!.metadata.name,
      streamBytes,
      kvBytes,
      storeBytes: natsSize(store),
      volumeBytes: quantity(volume),
    };
  }

  for (const overlay of OVERLAYS) {
    test(`${overlay}: NATS_MAX_BYTES < max_file_store < the NATS volume, with room beside the stream`, () => {
      const s = sizes(overlay);
      assert.ok(s.streamBytes > 0, `${overlay}: the stream has a byte limit`);
      assert.ok(
        s.streamBytes < s.storeBytes,
        `${overlay}: ${s.streamBytes} < max_file_store ${s.storeBytes}`,
      );
      assert.ok(
        s.storeBytes < s.volumeBytes,
        `${overlay}: max_file_store ${s.storeBytes} < volume ${s.volumeBytes}`,
      );
      // docs/production.md, Sizing the stream: ~75 % at most, the rest for the idempotency bucket,
      // the probe stream and Raft logs.
      assert.ok(s.streamBytes <= 0.8 * s.storeBytes, `${overlay}: the stream leaves a fifth of the store`);
    });

    test(`${overlay}: the stream and the Idempotency-Key bucket fit the store together, with room to spare`, () => {
      const s = sizes(overlay);
      assert.ok(s.kvBytes > 0, `${overlay}: the bucket has a byte limit`);
      // Each limit reserves its bytes in the store (a server refuses a stream it cannot reserve); the
      // last tenth is for the probe stream and whatever else shares the store.
      assert.ok(
        s.streamBytes + s.kvBytes <= 0.9 * s.storeBytes,
        `${overlay}: stream ${s.streamBytes} + bucket ${s.kvBytes} > 90 % of max_file_store ${s.storeBytes}`,
      );
      // docs/production.md, Sizing the idempotency bucket: at least a day of 100 keyed requests/s with
      // an IP (~510 bytes each, scripts/measure-idempotency-bytes.ts) in prod.
      if (overlay === 'prod') assert.ok(s.kvBytes >= 100 * 86_400 * 510, `${overlay}: ${s.kvBytes}`);
    });
  }

  test("with each overlay's limit the IntakeQueueStreamNearFull expression has a series (none without one)", async (t) => {
    if (needTool('promtool')) return t.skip('promtool is not installed');
    const alert = ruleNamed('IntakeQueueStreamNearFull');
    const tests = OVERLAYS.map((overlay) => {
      const { namespace, streamBytes } = sizes(overlay);
      const labels = `namespace="${namespace}",pod="intake-api-a",job="intake-api",stream="INTAKE"`;
      // What an API process exports with this overlay's setting: the stream's max_bytes, and 90 % of it used.
      return {
        interval: '1m',
        input_series: [
          { series: `intake_queue_stream_limit_bytes{${labels}}`, values: `${streamBytes}x15` },
          { series: `intake_queue_stream_bytes{${labels}}`, values: `${0.9 * streamBytes}x15` },
        ],
        promql_expr_test: [
          {
            expr: alert.expr,
            eval_time: '10m',
            exp_samples: [
              {
                labels: `namespace:intake_queue_stream_bytes_usage:ratio{namespace="${namespace}",stream="INTAKE"}`,
                value: 0.9,
              },
            ],
          },
        ],
      };
    });
    // What every overlay exported before it set NATS_MAX_BYTES: a limit of 0, and so no series at all.
    const none = 'namespace="unlimited",pod="intake-api-a",job="intake-api",stream="INTAKE"';
    tests.push({
      interval: '1m',
      input_series: [
        { series: `intake_queue_stream_limit_bytes{${none}}`, values: '0x15' },
        { series: `intake_queue_stream_bytes{${none}}`, values: '999999999x15' },
      ],
      promql_expr_test: [{ expr: alert.expr, eval_time: '10m', exp_samples: [] }],
    });
    await promtoolTest(t, 'stream-limit', tests);
  });

  test("with each overlay's limit the IntakeIdempotencyBucketNearFull expression has a series (none without one)", async (t) => {
    if (needTool('promtool')) return t.skip('promtool is not installed');
    const alert = ruleNamed('IntakeIdempotencyBucketNearFull');
    const series = 'namespace:intake_queue_idempotency_bucket_bytes_usage:ratio';
    const tests = OVERLAYS.map((overlay) => {
      const { namespace, kvBytes } = sizes(overlay);
      const labels = `namespace="${namespace}",pod="intake-api-a",job="intake-api",bucket="INTAKE-idempotency"`;
      // What an API process exports with this overlay's setting: the bucket's max_bytes, and 95 % of it used.
      return {
        interval: '1m',
        input_series: [
          { series: `intake_queue_idempotency_bucket_limit_bytes{${labels}}`, values: `${kvBytes}x15` },
          { series: `intake_queue_idempotency_bucket_bytes{${labels}}`, values: `${0.95 * kvBytes}x15` },
        ],
        promql_expr_test: [
          {
            expr: alert.expr,
            eval_time: '10m',
            exp_samples: [
              { labels: `${series}{bucket="INTAKE-idempotency",namespace="${namespace}"}`, value: 0.95 },
            ],
          },
        ],
      };
    });
    // NATS_IDEMPOTENCY_MAX_BYTES unset: a limit of 0, and so no series at all.
    const none = 'namespace="unlimited",pod="intake-api-a",job="intake-api",bucket="INTAKE-idempotency"';
    tests.push({
      interval: '1m',
      input_series: [
        { series: `intake_queue_idempotency_bucket_limit_bytes{${none}}`, values: '0x15' },
        { series: `intake_queue_idempotency_bucket_bytes{${none}}`, values: '999999999x15' },
      ],
      promql_expr_test: [{ expr: alert.expr, eval_time: '10m', exp_samples: [] }],
    });
    await promtoolTest(t, 'bucket-limit', tests);
  });
});

/** An alert of deploy/observability/prometheus-rules.yaml, by name. */
function ruleNamed(name: string): { alert?: string; expr: string } {
  const rules = parseYaml(readFileSync(join(REPO, 'deploy/observability/prometheus-rules.yaml'), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert?: string; expr: string }> }>;
  };
  const found = rules.groups.flatMap((g) => g.rules).find((r) => r.alert === name);
  assert.ok(found, `no alert ${name}`);
  return found;
}

/** Runs promtool's rule unit tests `tests` against deploy/observability/prometheus-rules.yaml. */
async function promtoolTest(t: TestContext, name: string, tests: unknown[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'intake-rules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, `${name}.test.yaml`);
  writeFileSync(
    file,
    stringifyYaml({
      rule_files: [join(REPO, 'deploy/observability/prometheus-rules.yaml')],
      evaluation_interval: '1m',
      tests,
    }),
  );
  const r = await run('promtool', ['test', 'rules', file]).catch(
    (e: { stdout: string; stderr: string }) => e,
  );
  assert.match(`${r.stdout}${r.stderr}`, /SUCCESS/, `${r.stdout}${r.stderr}`);
}

/** A nats-server configuration size: K/M/G/T are powers of 1000, KB/MB/GB/TB and Ki/Mi/Gi/Ti of 1024 (measured with nats-server 2.9). */
function natsSize(text: string): number {
  const m = /^(\d+)(?:([KMGT])(B|i)?)?$/.exec(text);
  if (!m) throw new Error(`not a nats-server size: ${text}`);
  const power = m[2] ? 'KMGT'.indexOf(m[2]) + 1 : 0;
  return Number(m[1]) * (m[3] ? 1024 : 1000) ** power;
}

/** A Kubernetes resource quantity in bytes: Ki/Mi/Gi/Ti are powers of 1024, k/M/G/T of 1000. */
function quantity(text: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(text);
  if (!m) throw new Error(`not a byte quantity: ${text}`);
  const unit = m[2] ?? '';
  const power = unit ? 'kMGT'.indexOf(unit[0]!.replace('K', 'k')) + 1 : 0;
  return Number(m[1]) * (unit.endsWith('i') ? 1024 : 1000) ** power;
}
