import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { REPO } from './tools.ts';

// biome-ignore lint/suspicious/noExplicitAny: workflow content
type Any = any;

const wf: Any = parse(readFileSync(join(REPO, '.github/workflows/ci.yaml'), 'utf8'));
const steps = (job: string): Any[] => wf.jobs[job].steps;
const runs = (job: string) => steps(job).map((s) => String(s.run ?? ''));

test('every action is pinned to a full commit SHA', () => {
  const uses = Object.values<Any>(wf.jobs).flatMap((j) =>
    (j.steps ?? []).map((s: Any) => s.uses).filter(Boolean),
  );
  assert.ok(uses.length >= 5);
  for (const u of uses) assert.match(u, /^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/, `${u} is not pinned to a commit`);
});

test('tests run on Node 20 and 24 against postgres:16 and a JetStream NATS', () => {
  const t = wf.jobs.test;
  assert.deepEqual(t.strategy.matrix.node, ['20', '24']);
  assert.match(t.services.postgres.image, /^postgres:16/);
  assert.ok(
    runs('test').some((r) => /nats:2\.10[\w.-]*\s+-js\b/.test(r)),
    'a NATS server with -js',
  );
  assert.ok(runs('test').includes('npm test'));
});

test('images are pushed only from main, after the tests; deploys go through deploy-apps', () => {
  assert.equal(wf.jobs.images.needs, 'test');
  assert.match(wf.jobs.images.if, /refs\/heads\/main/);
  assert.equal(wf.jobs.images.permissions.packages, 'write');
  for (const job of ['deploy-dev', 'deploy-prod']) {
    assert.ok(
      runs(job).some((r) => r.startsWith('./deploy-apps --overlay ')),
      `${job} runs ./deploy-apps`,
    );
    assert.equal(steps(job).find((s) => s.name === 'deploy').env.SKIP_BUILD, 'true');
  }
});

test('prod waits for dev and sits behind the production environment (the approval gate)', () => {
  assert.equal(wf.jobs['deploy-prod'].environment, 'production');
  assert.ok(wf.jobs['deploy-prod'].needs.includes('deploy-dev'));
  const names = steps('deploy-prod').map((s) => s.name);
  assert.ok(
    names.indexOf('doctor') < names.indexOf('deploy') && names.indexOf('deploy') < names.indexOf('smoke'),
  );
});
