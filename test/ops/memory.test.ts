import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { type K8sObject, kustomize, parseManifests } from '../deploy/k8s-render.ts';
import { needTool, REPO } from '../deploy/tools.ts';

/**
 * V8 does not export its heap limit, so IntakeHeapNearLimit derives it from the container's memory limit
 * with a fixed factor. That only works while every Node container sets --max-old-space-size to that share
 * of its limit: this test holds the manifests and compose.yaml to it (docs/memory-leaks.md).
 */
const RULES = join(REPO, 'deploy/observability/prometheus-rules.yaml');

function heapFactorOfAlert(): number {
  const rules = parse(readFileSync(RULES, 'utf8')) as {
    groups: Array<{ rules: Array<{ alert?: string; expr: string }> }>;
  };
  const alert = rules.groups.flatMap((g) => g.rules).find((r) => r.alert === 'IntakeHeapNearLimit');
  const m = /\(([\d.]+) \* max by \(namespace, pod\) \(kube_pod_container_resource_limits/.exec(
    alert?.expr ?? '',
  );
  assert.ok(
    m,
    'IntakeHeapNearLimit no longer has the form "(<factor> * max by (namespace, pod) (…limits…))"',
  );
  return Number(m[1]);
}

/** Kubernetes quantities (512Mi, 1Gi, 1G) and Docker sizes (512m, 1g), in bytes. */
function bytes(quantity: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]i?|[kmgt])?$/.exec(String(quantity).trim());
  assert.ok(m, `cannot read memory size ${quantity}`);
  const unit = m[2] ?? '';
  const pow = { k: 1, m: 2, g: 3, t: 4 }[unit[0]?.toLowerCase() ?? ''] ?? 0;
  const base = unit.endsWith('i') || /^[kmgt]$/.test(unit) ? 1024 : 1000;
  return Number(m[1]) * base ** pow;
}

function maxOldSpaceBytes(nodeOptions: string | undefined): number | undefined {
  const m = /--max-old-space-size=(\d+)/.exec(nodeOptions ?? '');
  return m ? Number(m[1]) * 1024 * 1024 : undefined;
}

interface Checked {
  where: string;
  ratio: number;
}

function nodeContainers(objects: K8sObject[]): Checked[] {
  const out: Checked[] = [];
  for (const o of objects.filter((x) => ['Deployment', 'StatefulSet'].includes(x.kind))) {
    for (const c of o.spec.template.spec.containers ?? []) {
      const heap = maxOldSpaceBytes(
        (c.env ?? []).find((e: { name: string }) => e.name === 'NODE_OPTIONS')?.value,
      );
      if (heap === undefined) continue;
      const limit = c.resources?.limits?.memory;
      assert.ok(limit, `${o.kind}/${o.metadata.name} ${c.name}: a heap limit but no memory limit`);
      out.push({ where: `${o.kind}/${o.metadata.name} ${c.name}`, ratio: heap / bytes(limit) });
    }
  }
  return out;
}

describe('heap limit vs container memory limit', () => {
  const factor = heapFactorOfAlert();
  const assertRatios = (checked: Checked[]) => {
    for (const c of checked) {
      assert.ok(
        Math.abs(c.ratio - factor) <= 0.05,
        `${c.where}: --max-old-space-size is ${(c.ratio * 100).toFixed(0)} % of the memory limit; ` +
          `IntakeHeapNearLimit assumes ${factor * 100} %`,
      );
    }
  };

  test('the size parser reads Kubernetes and Docker units', () => {
    assert.equal(bytes('512Mi'), 512 * 2 ** 20);
    assert.equal(bytes('1Gi'), 2 ** 30);
    assert.equal(bytes('1G'), 1e9);
    assert.equal(bytes('512m'), 512 * 2 ** 20);
  });

  const kubectlMissing = needTool('kubectl', ['version', '--client']);
  for (const dir of ['overlays/dev', 'overlays/prod', 'base/pod-watcher']) {
    test(`deploy/k8s/${dir}: every Node container's heap is ${factor * 100} % of its limit`, {
      skip: kubectlMissing,
    }, async () => {
      const checked = nodeContainers(parseManifests(await kustomize(join(REPO, 'deploy/k8s', dir))));
      const names = checked.map((c) => c.where).join(', ');
      if (dir.startsWith('overlays')) {
        assert.ok(/intake-api/.test(names) && /intake-worker/.test(names), `checked only: ${names}`);
      } else {
        assert.ok(/pod-watcher/.test(names), `checked only: ${names}`);
      }
      assertRatios(checked);
    });
  }

  test('compose.yaml: the same for the API and the worker', () => {
    const compose = parse(readFileSync(join(REPO, 'compose.yaml'), 'utf8'), { merge: true }) as {
      services: Record<string, { environment?: Record<string, string>; mem_limit?: string }>;
    };
    const checked: Checked[] = [];
    for (const [name, s] of Object.entries(compose.services)) {
      const heap = maxOldSpaceBytes(s.environment?.NODE_OPTIONS);
      if (heap === undefined) continue;
      assert.ok(s.mem_limit, `compose service ${name}: a heap limit but no mem_limit`);
      checked.push({ where: `compose service ${name}`, ratio: heap / bytes(s.mem_limit) });
    }
    assert.ok(
      checked.some((c) => c.where.endsWith(' api')) && checked.some((c) => c.where.endsWith(' worker')),
    );
    assertRatios(checked);
  });
});
