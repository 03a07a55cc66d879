import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { kustomize, parseManifests } from '../deploy/k8s-render.ts';
import { needTool, REPO } from '../deploy/tools.ts';

/**
 * The alert rules (docs/alerting.md): promtool accepts and unit-tests them, every alert is routable and has a
 * runbook section that exists, and the Prometheus Operator copy carries exactly the same rules.
 */
const run = promisify(execFile);
const RULES = join(REPO, 'deploy/observability/prometheus-rules.yaml');
const RULE_TESTS = join(REPO, 'deploy/observability/prometheus-rules.test.yaml');
const RUNBOOKS = join(REPO, 'docs/runbooks.md');
const OPERATOR_DIR = join(REPO, 'deploy/k8s/base/observability');
const OPERATOR_RULE = join(OPERATOR_DIR, 'prometheus-rule.yaml');
const RUNBOOK_URL = 'https://github.com/example/intake/blob/main/docs/runbooks.md#';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: Array<{ name: string; rules: Rule[] }>;
}

const rules = parse(readFileSync(RULES, 'utf8')) as RuleFile;
const alerts = rules.groups.flatMap((g) => g.rules.filter((r): r is Rule & { alert: string } => !!r.alert));

/** The PrometheusRule object, generated from the plain rule file (its `groups:` indented under spec). */
function renderPrometheusRule(plain: string): string {
  const groups = plain.slice(plain.search(/^groups:/m));
  const indented = groups
    .split('\n')
    .map((line) => (line ? `  ${line}` : line))
    .join('\n');
  return `# GENERATED from deploy/observability/prometheus-rules.yaml by test/ops/alerts.test.ts: edit that file,
# then run  UPDATE_OBSERVABILITY=1 node scripts/run-tests.mjs test/ops/alerts.test.ts
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: intake
  labels:
    app.kubernetes.io/name: intake
    app.kubernetes.io/component: observability
spec:
${indented}`;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1/-2… for repeats. */
function headingAnchors(markdown: string): Map<string, string> {
  const sections = new Map<string, string>();
  const seen = new Map<string, number>();
  let fence = false;
  let current: string | undefined;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fence = !fence;
    const h = fence ? null : /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (h) {
      const base = h[1]!
        .toLowerCase()
        .replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-');
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      current = n === 0 ? base : `${base}-${n}`;
      sections.set(current, '');
    } else if (current !== undefined) {
      sections.set(current, `${sections.get(current)}${line}\n`);
    }
  }
  return sections;
}

const promtoolMissing = needTool('promtool');

describe('promtool', { skip: promtoolMissing }, () => {
  test('check rules accepts the rule file', async () => {
    const r = await run('promtool', ['check', 'rules', RULES]).catch((e) => e);
    assert.equal(r.code ?? 0, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /SUCCESS: \d+ rules found/);
  });

  test('test rules: every unit test passes', async () => {
    const r = await run('promtool', ['test', 'rules', RULE_TESTS]).catch((e) => e);
    assert.equal(r.code ?? 0, 0, `${r.stdout}\n${r.stderr}`);
  });

  test('the unit tests cover the alerts the brief singles out', () => {
    const tested = new Set(
      [...readFileSync(RULE_TESTS, 'utf8').matchAll(/alertname: (\w+)\n\s+exp_alerts:/g)].map((m) => m[1]),
    );
    for (const name of [
      'IntakeDeadLetters',
      'IntakeWorkerBehind',
      'IntakeWorkerStalled',
      'IntakeHeapGrowing',
      'PodWatcherNoLeader',
      'PodWatcherMultipleLeaders',
      'KubeNodeNotReady',
      'IntakeServerErrors',
      'IntakeIdempotencyBucketNearFull',
    ]) {
      assert.ok(tested.has(name), `no firing test for ${name}`);
    }
  });
});

describe('every alert is routable and documented', () => {
  const runbooks = headingAnchors(readFileSync(RUNBOOKS, 'utf8'));

  test('alert names are unique', () => {
    const names = alerts.map((a) => a.alert);
    assert.deepEqual(
      names.filter((n, i) => names.indexOf(n) !== i),
      [],
    );
    assert.ok(alerts.length >= 30, `only ${alerts.length} alerts`);
  });

  for (const a of alerts) {
    test(`${a.alert}: severity, summary, description with a value, runbook section`, () => {
      assert.ok(
        ['page', 'ticket'].includes(a.labels?.severity ?? ''),
        `severity is ${a.labels?.severity}, want page or ticket`,
      );
      for (const k of ['summary', 'description', 'runbook_url'])
        assert.ok(a.annotations?.[k]?.trim(), `no ${k} annotation`);
      assert.match(a.annotations!.description!, /\{\{.*\$(value|labels)/, 'the description shows no value');
      const url = a.annotations!.runbook_url!;
      assert.ok(url.startsWith(RUNBOOK_URL), `runbook_url ${url} is not in docs/runbooks.md`);
      const anchor = url.slice(RUNBOOK_URL.length);
      assert.ok(runbooks.has(anchor), `docs/runbooks.md has no heading with anchor #${anchor}`);
      assert.ok(
        runbooks.get(anchor)!.includes(a.alert),
        `the #${anchor} section of docs/runbooks.md does not name ${a.alert}`,
      );
    });
  }

  test('runbook links in the source code (e.g. intake doctor) point at existing sections', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((n) => {
        const p = join(dir, n);
        return statSync(p).isDirectory() ? files(p) : [p];
      });
    const refs = files(join(REPO, 'src')).flatMap((f) =>
      [...readFileSync(f, 'utf8').matchAll(/runbooks\.md#([\w-]+)/g)].map((m) => ({
        file: relative(REPO, f),
        anchor: m[1]!,
      })),
    );
    assert.ok(refs.length > 0, 'expected intake doctor to link docs/runbooks.md#dead-letters');
    for (const r of refs) assert.ok(runbooks.has(r.anchor), `${r.file} links to missing #${r.anchor}`);
  });
});

describe('the PrometheusRule for the Prometheus Operator', () => {
  test('is generated from the plain rule file', () => {
    const want = renderPrometheusRule(readFileSync(RULES, 'utf8'));
    if (process.env.UPDATE_OBSERVABILITY === '1') writeFileSync(OPERATOR_RULE, want);
    assert.equal(
      readFileSync(OPERATOR_RULE, 'utf8'),
      want,
      'deploy/k8s/base/observability/prometheus-rule.yaml is stale: ' +
        'UPDATE_OBSERVABILITY=1 node scripts/run-tests.mjs test/ops/alerts.test.ts',
    );
  });

  const kubectlMissing = needTool('kubectl', ['version', '--client']);
  test('renders with kustomize and carries exactly the same groups', { skip: kubectlMissing }, async () => {
    const objects = parseManifests(await kustomize(OPERATOR_DIR));
    const crs = objects.filter((o) => o.kind === 'PrometheusRule');
    assert.equal(crs.length, 1);
    assert.equal(crs[0]!.apiVersion, 'monitoring.coreos.com/v1');
    assert.deepEqual(crs[0]!.spec, { groups: rules.groups });
  });
});

describe('the synthetic-check alert watches a CronJob that is shipped', () => {
  const alert = rules.groups.flatMap((g) => g.rules).find((r) => r.alert === 'IntakeSyntheticCheckFailing');
  const name = /cronjob="([^"]+)"/.exec(alert?.expr ?? '')?.[1];
  for (const overlay of ['dev', 'prod']) {
    test(`${overlay}: CronJob ${name} runs \`intake smoke\` every minute`, {
      skip: needTool('kubectl', ['version', '--client']),
    }, async () => {
      assert.ok(name, 'the alert names its CronJob');
      const objects = parseManifests(await kustomize(join(REPO, 'deploy/k8s/overlays', overlay)));
      const cron = objects.find((o) => o.kind === 'CronJob' && o.metadata.name === name) as
        | {
            spec: {
              schedule: string;
              jobTemplate: { spec: { template: { spec: { containers: Array<{ args?: string[] }> } } } };
            };
          }
        | undefined;
      assert.ok(cron, `CronJob ${name} is in the ${overlay} overlay`);
      assert.equal(cron.spec.schedule, '* * * * *');
      assert.equal(cron.spec.jobTemplate.spec.template.spec.containers[0]!.args?.[0], 'smoke');
    });
  }
});
