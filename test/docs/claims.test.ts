import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { type TestContext, test } from 'node:test';
import { parse } from 'yaml';
import { waitFor } from '../../harness/db.ts';
import { ERRORS } from '../../src/http/error-registry.ts';
import { ExitCode } from '../../src/ops/process-exit.ts';
import { startTestApp } from '../helpers/app.ts';
import { startCluster } from '../pod-watcher/replicas.ts';

/**
 * What README.md and docs/*.md state that a machine can check, held against the code and against what
 * running processes really export. Docs drift silently otherwise: a renamed metric or label, an alert
 * that was never written, a file that moved, an error code or exit code that changed.
 *
 * - every metric they name is in the /metrics exposition of a running intake (API and worker; both queues
 *   share one registry, ops/metrics.ts) or pod watcher, and every label used with it exists on it;
 *   recording rules exist in the rules;
 * - every alert they name is in deploy/observability/prometheus-rules.yaml, and every dashboard row and
 *   panel (`*Traffic* → "Error ratio by route"`) in deploy/observability/grafana-dashboard.json;
 * - every repository path they name exists (a glob matches something), every relative link resolves,
 *   with its #anchor;
 * - a status written before an error code (`503 QUEUE_FULL`) is that code's (docs/errors.md's table of
 *   codes is test/http/error-registry.test.ts's); an UPPER_SNAKE name they use exists somewhere in the code;
 *   alerting.md's table of rejection reasons is the registry's (src/http/error-registry.ts);
 * - every exit code they give is one src/ops/process-exit.ts defines, for the same meaning.
 *
 * Each check also counts what it read, so one whose pattern stops matching fails instead of passing.
 */
const REPO = new URL('../../', import.meta.url).pathname;
const DOCS = [
  'README.md',
  ...readdirSync(join(REPO, 'docs')).flatMap((f) => (f.endsWith('.md') ? [`docs/${f}`] : [])),
];
const text = new Map(DOCS.map((d) => [d, readFileSync(join(REPO, d), 'utf8')]));
const FILES = execFileSync('git', ['ls-files'], { cwd: REPO, encoding: 'utf8' }).split('\n').filter(Boolean);

/** How many mentions each check read: a check whose pattern stopped matching must not pass unseen. */
const seen = new Map<string, number>();

/** Every match of `re` in the docs, with where it is, counted under `what`. */
function* matches(what: string, re: RegExp): Generator<{ at: string; m: RegExpExecArray; line: string }> {
  const global = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
  for (const [doc, body] of text) {
    for (const [i, line] of body.split('\n').entries()) {
      for (const m of line.matchAll(global)) {
        seen.set(what, (seen.get(what) ?? 0) + 1);
        yield { at: `${doc}:${i + 1}`, m: m as RegExpExecArray, line };
      }
    }
  }
}

/** Labels every scraped series carries besides its own (Prometheus target labels, the histogram's `le`). */
const TARGET_LABELS = new Set(['namespace', 'pod', 'job', 'instance', 'service', 'container', 'endpoint']);

interface Exported {
  /** Metric names as Prometheus stores them (histograms with _bucket, _sum, _count). */
  names: Set<string>;
  /** Label names by metric name (all suffixes of a histogram share them, plus `le` on _bucket). */
  labels: Map<string, Set<string>>;
}

/** Names and label names from an exposition: `# TYPE` lines and the series themselves. */
function fromExposition(body: string, into: Exported): void {
  const families = new Map<string, string>();
  for (const m of body.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    const [name, type] = [m[1]!, m[2]!];
    families.set(name, type);
    // A histogram is named by its family too ("intake_worker_batch_size"), and stored as three series.
    const names = type === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
    for (const n of names) {
      into.names.add(n);
      if (!into.labels.has(n)) into.labels.set(n, new Set());
    }
  }
  for (const m of body.matchAll(/^([a-zA-Z_:][\w:]*)\{([^}]*)\}/gm)) {
    for (const l of m[2]!.matchAll(/(\w+)="/g)) into.labels.get(m[1]!)?.add(l[1]!);
  }
}

/** The same metrics' declared label names (a labelled series appears only once something happened). */
function fromRegistry(
  registry: { getMetricsAsArray(): Array<{ name: string; labelNames?: readonly string[] }> },
  into: Exported,
) {
  for (const metric of registry.getMetricsAsArray()) {
    for (const n of [metric.name, `${metric.name}_bucket`, `${metric.name}_sum`, `${metric.name}_count`]) {
      for (const l of metric.labelNames ?? []) into.labels.get(n)?.add(l);
    }
    into.labels.get(`${metric.name}_bucket`)?.add('le');
  }
}

async function exported(t: TestContext): Promise<Exported> {
  const out: Exported = { names: new Set(), labels: new Map() };
  const app = await startTestApp('doc_claims');
  try {
    const res = await app.post('/v1/messages', { ts: 1530228282, sender: 'claims', message: { a: 1 } });
    assert.equal(res.status, 202);
    await res.arrayBuffer();
    const body = await (await fetch(`${app.url}/metrics`)).text();
    fromExposition(body, out);
    fromRegistry(app.running.metrics.registry, out);
  } finally {
    await app.close();
  }
  const cluster = await startCluster(t, 1);
  // Generous: with the 15 s defaults this failed once, in a cold first run beside four other test
  // files on a loaded 2-core machine; nothing here is timing under test.
  const leader = await cluster.leader(60_000);
  cluster.fake.createPod({ namespace: 'shop', name: 'web-1' });
  await waitFor('the pod to be logged', () => leader.loggedPods().includes('shop/web-1'), 30_000);
  const port = await leader.metricsPort();
  fromExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), out);
  return out;
}

const rules = parse(readFileSync(join(REPO, 'deploy/observability/prometheus-rules.yaml'), 'utf8')) as {
  groups: Array<{ rules: Array<{ alert?: string; record?: string }> }>;
};
const ALERTS = new Set(rules.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : []))));
const RECORDS = new Set(rules.groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))));

/** Every tracked file but the docs, as one text: where a name a doc uses must be defined. */
const CODE = FILES.filter((f) => !DOCS.includes(f) && !/\.(png|jpg|ico|woff2?)$/.test(f))
  .map((f) => {
    try {
      return readFileSync(join(REPO, f), 'utf8');
    } catch {
      return '';
    }
  })
  .join('\n');
const SQL = FILES.filter((f) => f.startsWith('sql/'))
  .map((f) => readFileSync(join(REPO, f), 'utf8'))
  .join('\n');

/** GitHub's heading anchors of a markdown text. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fence = !fence;
    const h = fence ? null : /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = h[1]!
      .replace(/`/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** A path pattern (`*`, `<placeholder>`, `{a,b}`) as a regular expression over repository paths. */
function pathPattern(p: string): RegExp {
  const src = p
    .replace(/[.+^$()|[\]\\]/g, '\\$&')
    .replace(/\{([^}]*)\}/g, (_, alts: string) => `(?:${alts.split(',').join('|')})`)
    .replace(/<[^>]+>/g, '[^/]+')
    .replace(/\*/g, '[^/]*');
  return new RegExp(`^${src}(?:/.*)?$`);
}

test('the docs claim only what is true', async (t) => {
  const ex = await exported(t);

  await t.test('every metric named exists, with the labels used on it', () => {
    const wrong: string[] = [];
    const sqlNames = new Set([...SQL.matchAll(/\b[a-z_][a-z0-9_]*\b/g)].map((m) => m[0]));
    const METRIC = /(?<![\w:./$-])((?:intake|pod_watcher|nodejs|process)_[a-z0-9_]*)(\*|\{[^}\n]*\})?/g;
    for (const { at, m } of matches('metrics', METRIC)) {
      const [name, braces] = [m[1]!, m[2] ?? ''];
      // A family (`nodejs_*`, `nodejs_active_{handles,requests}_total`): a description, not a name.
      if (name.endsWith('_') || braces === '*') continue;
      if (sqlNames.has(name)) continue; // a role or table (intake_api, intake_worker)
      if (!ex.names.has(name)) {
        wrong.push(`${at}: metric ${name} is not exported by intake or the pod watcher`);
        continue;
      }
      const labels = ex.labels.get(name)!;
      for (const l of braces
        .slice(1, -1)
        .matchAll(/(?:^|,)\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)?\s*("[^"]*")?/g)) {
        const [label, op, value] = [l[1]!, l[2], l[3]?.slice(1, -1)];
        // `{task}` names the metric's own labels; a matcher (`{namespace="intake"}`) may use the target's.
        if (!labels.has(label) && (op === undefined || !TARGET_LABELS.has(label))) {
          wrong.push(`${at}: ${name} has no label ${label} (it has: ${[...labels].join(', ') || 'none'})`);
        }
        if (label === 'reason' && value !== undefined) {
          for (const v of value.split('|'))
            if (!Object.values(ERRORS).some((row) => row.reason === v))
              wrong.push(`${at}: ${name}{reason="${v}"}: no such reason`);
        }
      }
    }
    for (const { at, m } of matches('recording rules', /(?<![\w:])([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b/g)) {
      if (m[1]!.startsWith('urn:')) continue; // urn:intake:problem:<code>
      if (!RECORDS.has(m[1]!)) wrong.push(`${at}: recording rule ${m[1]} is not in the rules`);
    }
    assert.deepEqual(wrong, []);
  });

  await t.test('every alert named is in the rules', () => {
    const wrong: string[] = [];
    for (const { at, m } of matches('alerts', /\b(?:Intake|Nats|Postgres|Kube|PodWatcher|Scrape)[A-Z]\w+/g)) {
      const name = m[0];
      // Names of the code (IntakeClient, NatsProvisionError) are not alerts.
      if (ALERTS.has(name) || new RegExp(`\\b(class|interface|type|function) ${name}\\b`).test(CODE))
        continue;
      wrong.push(`${at}: alert ${name} is not in deploy/observability/prometheus-rules.yaml`);
    }
    assert.deepEqual(wrong, []);
  });

  await t.test('every repository path named exists; every relative link resolves, anchor included', () => {
    const wrong: string[] = [];
    const PATH =
      /(?<![\w./:@-])((?:src|docs|deploy|test|sql|scripts|harness|bin|packages|go-app)\/[\w.*<>{},/-]*[\w*>}]|(?:README\.md|compose\.yaml|Dockerfile|deploy-apps|package\.json|biome\.json|redocly\.yaml)\b)/g;
    for (const { at, m } of matches('paths', PATH)) {
      const p = m[1]!.replace(/\.$/, '');
      // `kubectl … deploy/intake-api`: kubectl's name for a Deployment, not a file.
      if (/^deploy\/[\w-]+$/.test(p) && !FILES.some((f) => f.startsWith(`${p}/`))) continue;
      const re = pathPattern(p);
      if (!FILES.some((f) => re.test(f))) wrong.push(`${at}: ${p} does not exist in the repository`);
    }
    for (const { at, m } of matches('links', /\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue;
      const doc = at.slice(0, at.indexOf(':'));
      const [file, anchor] = target.split('#') as [string, string | undefined];
      const path = file === '' ? doc : normalize(join(dirname(doc), file));
      if (!existsSync(join(REPO, path))) {
        wrong.push(`${at}: link to ${target}: ${path} does not exist`);
        continue;
      }
      if (anchor && path.endsWith('.md') && !anchors(readFileSync(join(REPO, path), 'utf8')).has(anchor))
        wrong.push(`${at}: link to ${target}: ${path} has no heading #${anchor}`);
    }
    assert.deepEqual(wrong, []);
  });

  await t.test('every dashboard row and panel named exists', () => {
    const wrong: string[] = [];
    const dashboard = JSON.parse(
      readFileSync(join(REPO, 'deploy/observability/grafana-dashboard.json'), 'utf8'),
    ) as { panels: Array<{ type: string; title: string; targets?: Array<{ legendFormat?: string }> }> };
    // Rows are not collapsed: a row holds the panels that follow it, up to the next row. What a row
    // shows: its panels' titles and their series' legends ({{label}} standing for any value).
    const rows = new Map<string, RegExp[]>();
    let row: RegExp[] = [];
    const literal = (s: string) =>
      new RegExp(`^${s.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\{\s*\w+\s*\}\}/g, '.+')}$`);
    for (const p of dashboard.panels) {
      if (p.type === 'row') {
        row = [];
        rows.set(p.title, row);
      } else row.push(literal(p.title), ...(p.targets ?? []).map((t) => literal(t.legendFormat ?? '')));
    }
    const rowNamed = (name: string) => [...rows.keys()].find((r) => r === name || r.startsWith(`${name} (`));
    for (const { at, m } of matches('dashboard rows', /[Dd]ashboard (?:row )?\*([^*]+)\*/g))
      if (!rowNamed(m[1]!)) wrong.push(`${at}: the dashboard has no row *${m[1]}*`);
    for (const { at, m } of matches('dashboard panels', /\*([^*]+)\*(?: →|:) ("[^"]+"(?:, "[^"]+")*)/g)) {
      const r = rowNamed(m[1]!);
      if (!r) {
        wrong.push(`${at}: the dashboard has no row *${m[1]}*`);
        continue;
      }
      for (const q of m[2]!.matchAll(/"([^"]+)"/g))
        if (!rows.get(r)!.some((re) => re.test(q[1]!)))
          wrong.push(`${at}: row *${r}* shows nothing called "${q[1]}"`);
    }
    assert.deepEqual(wrong, []);
  });

  // docs/errors.md's table of codes is held to the registry by test/http/error-registry.test.ts.
  await t.test('error codes: a status before a code is its own; every UPPER_SNAKE name exists', () => {
    const wrong: string[] = [];
    for (const { at, m } of matches(
      'status and code',
      /\b([1-5]\d\d) `?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b/g,
    )) {
      const [status, code] = [Number(m[1]), m[2]!];
      const known = ERRORS[code as keyof typeof ERRORS];
      if (!known) wrong.push(`${at}: ${status} ${code}: no such error code`);
      else if (known.status !== status)
        wrong.push(`${at}: ${code} is answered ${known.status}, not ${status}`);
    }
    // A name no code defines is a typo or something that went away. The outside world's names stay:
    // MySQL's AUTO_INCREMENT, S3 credentials, Docker's and Node's variables, NATS's KV_<bucket> streams
    // and MAX_DELIVERIES advisories.
    const OUTSIDE = new Set([
      'AUTO_INCREMENT',
      'ACCESS_KEY_ID',
      'ACCESS_SECRET_KEY',
      'DOCKER_HOST',
      'NODE_OPTIONS',
      'KV_INTAKE',
      'MAX_DELIVERIES',
    ]);
    for (const { at, m } of matches('names', /\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)) {
      const name = m[0];
      if (OUTSIDE.has(name) || new RegExp(`\\b${name}\\b`).test(CODE)) continue;
      wrong.push(`${at}: ${name} is defined nowhere in the code`);
    }
    assert.deepEqual(wrong, []);
  });

  await t.test("alerting.md's rejection reasons are the error registry's", () => {
    const section =
      text
        .get('docs/alerting.md')!
        .split(/\n### Rejection reasons\n/)[1]
        ?.split(/\n#/)[0] ?? '';
    const documented = new Map<string, string>();
    for (const m of section.matchAll(/^\| `(\w+)` \| ([^|]+) \|/gm)) {
      for (const c of m[2]!.matchAll(/`([A-Z_]+)`/g)) documented.set(c[1]!, m[1]!);
    }
    assert.deepEqual(
      Object.fromEntries([...documented].sort()),
      Object.fromEntries(
        Object.entries(ERRORS)
          .map(([code, row]) => [code, row.reason])
          .sort(),
      ),
    );
  });

  await t.test('exit codes are those of src/ops/process-exit.ts, for the same meaning', () => {
    const wrong: string[] = [];
    // 128 + a signal's number, as a shell reports a process a signal ended (SIGINT, SIGABRT, SIGKILL, SIGTERM).
    const allowed = new Set<number>([...Object.values(ExitCode), 130, 134, 137, 143]);
    const meaning: Array<[RegExp, number]> = [
      [/config/i, ExitCode.config],
      [/(?<!renew )deadline/i, ExitCode.deadline],
      [/usage/i, ExitCode.usage],
    ];
    const check = (at: string, code: number, about: string) => {
      if (!allowed.has(code)) wrong.push(`${at}: exit code ${code} is not one intake uses`);
      for (const [re, want] of meaning)
        if (re.test(about) && code !== want)
          wrong.push(`${at}: exit code ${code} for "${about.trim()}" is ${want}`);
    };
    // "exits 78", "exit code 70", "exits with status 1", "exit 1 on failure", "exits 0 or 1".
    for (const { at, m } of matches(
      'exit codes',
      /\bexit(?:s|ed)?(?: with)?(?: (?:code|status))?:? (\d{1,3})\b([^.;:()|]{0,40})/gi,
    ))
      check(at, Number(m[1]), m[2]!);
    // Lists under "Exit codes:": "- 2: invalid configuration;".
    for (const [doc, body] of text) {
      for (const block of body.split(/exit codes:?\s*\n/i).slice(1)) {
        for (const item of block.split(/\n\s*\n/)[0]!.matchAll(/^\s*- (\d{1,3}): ([^\n]*)/gm))
          check(`${doc} (exit codes list)`, Number(item[1]), item[2]!);
      }
    }
    assert.deepEqual(wrong, []);
  });
  await t.test('the checks above read what the docs hold', () => {
    const least: Record<string, number> = {
      // About half of what today's docs hold (61, 113, 232, 99, 7, 20, 360, 27).
      metrics: 30,
      alerts: 60,
      paths: 100,
      links: 50,
      'dashboard panels': 4,
      'status and code': 10,
      names: 150,
      'exit codes': 12,
    };
    for (const [what, n] of Object.entries(least)) {
      assert.ok(
        (seen.get(what) ?? 0) >= n,
        `${what}: only ${seen.get(what) ?? 0} mentions read, expected ${n}`,
      );
    }
  });
});
