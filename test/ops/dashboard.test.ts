import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { createMetrics as createIntakeMetrics } from '../../src/ops/metrics.ts';
import { createMetrics as createPodWatcherMetrics } from '../../src/pod-watcher/metrics.ts';
import { kustomize, parseManifests } from '../deploy/k8s-render.ts';
import { needTool, REPO } from '../deploy/tools.ts';

/**
 * The Grafana dashboard: well-formed, and every metric a panel (or an alert rule) queries exists, so
 * renaming a metric in src/ breaks this test instead of silently emptying a panel.
 */
const run = promisify(execFile);
const DASHBOARD = join(REPO, 'deploy/observability/grafana-dashboard.json');
const DASHBOARD_COPY = join(REPO, 'deploy/k8s/base/observability/grafana-dashboard.json');
const RULES = join(REPO, 'deploy/observability/prometheus-rules.yaml');

/** Metrics from exporters that are not part of this repository (kube-state-metrics, cAdvisor, …). */
const EXPORTER_PREFIXES = [
  'kube_',
  'kubelet_',
  'container_',
  'node_',
  'gnatsd_',
  'jetstream_',
  'cnpg_',
  'nats_',
];

/** Series Prometheus itself records for every scrape target (the up/absent alerts use `up`). */
const SCRAPE_SERIES = new Set([
  'up',
  'scrape_duration_seconds',
  'scrape_samples_scraped',
  'scrape_series_added',
]);

const PROMQL_WORDS = new Set(
  `abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min count
   count_over_time count_values day_of_month day_of_week days_in_month delta deriv exp floor group
   histogram_quantile holt_winters hour idelta increase irate label_join label_replace last_over_time ln
   log10 log2 max max_over_time min min_over_time minute month predict_linear present_over_time quantile
   quantile_over_time rate resets round scalar sgn sort sort_desc sqrt stddev stddev_over_time stdvar
   stdvar_over_time sum sum_over_time time timestamp topk vector year and or unless bool offset by without
   on ignoring group_left group_right inf nan`.split(/\s+/),
);

/** Grafana's variables replaced by values PromQL accepts. */
const withVariables = (expr: string) =>
  expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replaceAll('$namespace', 'intake');

/** Metric names in a PromQL expression: what is left after strings, matchers, label lists and ranges. */
function metricNames(expr: string): string[] {
  const bare = withVariables(expr)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\boffset\s+\w+/g, ' ')
    .replace(/(?<![\w:])\d+(\.\d+)?(e[+-]?\d+)?/gi, ' ');
  return [...bare.matchAll(/[a-zA-Z_:][\w:]*/g)].map((m) => m[0]).filter((w) => !PROMQL_WORDS.has(w));
}

async function knownMetrics(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const registry of [createIntakeMetrics().registry, createPodWatcherMetrics('test').registry]) {
    for (const m of await registry.getMetricsAsJSON()) {
      names.add(m.name);
      // prom-client's typings declare a numeric enum; at run time the type is a string.
      const type = String(m.type);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
      if (type === 'summary') for (const s of ['_sum', '_count']) names.add(m.name + s);
    }
  }
  const rules = parse(readFileSync(RULES, 'utf8')) as {
    groups: Array<{ rules: Array<{ record?: string }> }>;
  };
  for (const g of rules.groups) for (const r of g.rules) if (r.record) names.add(r.record);
  return names;
}

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title?: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

const text = readFileSync(DASHBOARD, 'utf8');
const dashboard = JSON.parse(text) as {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query: unknown; definition?: string }> };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = panels.filter((p) => p.type !== 'row');
const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, expr: t.expr ?? '' })));

describe('the Grafana dashboard', () => {
  test('has the basics Grafana needs to import it', () => {
    assert.ok(dashboard.uid && dashboard.title);
    assert.ok(
      dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41,
      `schemaVersion ${dashboard.schemaVersion}`,
    );
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    assert.equal(vars.get('datasource')?.type, 'datasource');
    assert.equal(vars.get('datasource')?.query, 'prometheus');
    assert.equal(vars.get('namespace')?.type, 'query');
  });

  test('panels have unique ids and sit on the 24-column grid without overlapping', () => {
    const ids = panels.map((p) => p.id);
    assert.ok(
      ids.every((id) => Number.isInteger(id)),
      'panel ids must be integers',
    );
    assert.deepEqual(
      ids.filter((id, i) => ids.indexOf(id) !== i),
      [],
      'duplicate panel ids',
    );
    for (const p of panels) {
      const { h, w, x, y } = p.gridPos ?? {};
      assert.ok([h, w, x, y].every((n) => Number.isInteger(n)) && w! > 0 && h! > 0, `${p.title}: gridPos`);
      assert.ok(x! >= 0 && x! + w! <= 24, `${p.title}: gridPos beyond 24 columns`);
    }
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        assert.ok(!overlap, `"${a.title}" overlaps "${b.title}"`);
      }
    }
  });

  test('every panel queries Prometheus through the datasource variable, per namespace', () => {
    assert.ok(queryPanels.length >= 30, `only ${queryPanels.length} panels`);
    for (const p of queryPanels) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template
      assert.equal(p.datasource?.uid, '${datasource}', `${p.title}: datasource`);
      assert.ok(p.targets?.length, `${p.title}: no targets`);
      const refIds = p.targets!.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${p.title}: duplicate refId`);
      for (const t of p.targets!) {
        assert.ok(t.expr?.trim(), `${p.title}: target ${t.refId} has no expr`);
        assert.match(t.expr!, /namespace="\$namespace"/, `${p.title}: ${t.expr} ignores $namespace`);
      }
    }
  });

  test('has the rows the runbooks refer to', () => {
    const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
    for (const r of ['Traffic', 'Ingest pipeline', 'Loss accounting', 'NATS JetStream', 'Pod watcher'])
      assert.ok(rows.includes(r), `no row "${r}" (have: ${rows.join(', ')})`);
    assert.ok(rows.some((r) => r?.startsWith('Node.js runtime')));
    assert.ok(rows.some((r) => r?.startsWith('PostgreSQL')));
  });

  const promtoolMissing = needTool('promtool');
  test('every panel query is valid PromQL', { skip: promtoolMissing }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'intake-dashboard-'));
    try {
      const file = join(dir, 'dashboard-queries.yaml');
      const rules = exprs.map(({ panel, expr }, i) => ({
        record: `dashboard:panel_${panel.id}_${i}`,
        expr: withVariables(expr),
      }));
      writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
      const r = await run('promtool', ['check', 'rules', file]).catch((e) => e);
      assert.equal(r.code ?? 0, 0, `${r.stdout}\n${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metric names used by the dashboard and the alert rules exist', () => {
  test('the extractor finds metric names and nothing else', () => {
    assert.deepEqual(
      metricNames(
        'histogram_quantile(0.99, sum by (namespace, le) (rate(intake_end_to_end_lag_seconds_bucket{le="1e3",x=~"a|b"}[$__rate_interval]))) > 1e6 and on (pod) up offset 5m',
      ),
      ['intake_end_to_end_lag_seconds_bucket', 'up'],
    );
  });

  const check = async (where: string, list: Array<{ what: string; expr: string }>) => {
    const known = await knownMetrics();
    const unknown = list.flatMap(({ what, expr }) =>
      metricNames(expr)
        .filter(
          (m) => !known.has(m) && !SCRAPE_SERIES.has(m) && !EXPORTER_PREFIXES.some((p) => m.startsWith(p)),
        )
        .map((m) => `${what}: ${m}`),
    );
    assert.deepEqual(unknown, [], `${where} uses metrics that src/ does not export`);
  };

  test('in the dashboard', async () => {
    const list = exprs.map(({ panel, expr }) => ({ what: `panel "${panel.title}"`, expr }));
    for (const v of dashboard.templating.list) {
      const m = /label_values\((\w+)/.exec(v.definition ?? '');
      if (m) list.push({ what: `variable ${v.name}`, expr: m[1]! });
    }
    await check('the dashboard', list);
  });

  test('in the alert and recording rules', async () => {
    const rules = parse(readFileSync(RULES, 'utf8')) as {
      groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }>;
    };
    const list = rules.groups.flatMap((g) =>
      g.rules.map((r) => ({ what: r.alert ?? r.record ?? '?', expr: r.expr })),
    );
    await check('prometheus-rules.yaml', list);
  });

  test('a renamed metric is caught', async () => {
    const known = await knownMetrics();
    assert.ok(known.has('intake_messages_dead_lettered_total'));
    assert.ok(!known.has('intake_messages_deadlettered_total'));
  });
});

describe('the dashboard ConfigMap for the Grafana sidecar', () => {
  test('holds the same dashboard', () => {
    if (process.env.UPDATE_OBSERVABILITY === '1') writeFileSync(DASHBOARD_COPY, text);
    assert.equal(
      readFileSync(DASHBOARD_COPY, 'utf8'),
      text,
      'deploy/k8s/base/observability/grafana-dashboard.json is stale: ' +
        'UPDATE_OBSERVABILITY=1 node scripts/run-tests.mjs test/ops/dashboard.test.ts',
    );
  });

  const kubectlMissing = needTool('kubectl', ['version', '--client']);
  test('renders with the grafana_dashboard label', { skip: kubectlMissing }, async () => {
    const objects = parseManifests(await kustomize(join(REPO, 'deploy/k8s/base/observability')));
    const cm = objects.find((o) => o.kind === 'ConfigMap');
    assert.equal(cm?.metadata.name, 'intake-grafana-dashboard');
    assert.equal(cm?.metadata.labels?.grafana_dashboard, '1');
    assert.equal(cm?.data?.['intake.json'], text);
  });
});
