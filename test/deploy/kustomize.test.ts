import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type K8sObject, kustomize, OVERLAYS, overlayDir, parseManifests, ref } from './k8s-render.ts';
import { StrictSchema } from './k8s-schema.ts';
import { needTool, REPO } from './tools.ts';

const skip = needTool('kubectl', ['version', '--client']);

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
