import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseManifests } from './k8s-render.ts';
import { needTool, REPO } from './tools.ts';

const skip = needTool('kubectl', ['version', '--client']);
const FAKES = join(REPO, 'test/deploy/fakes');
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  /** Every fake docker/kubectl invocation, in order. */
  calls: string[];
  /** The last manifest file passed to `kubectl apply -f`. */
  applied: string;
}

/**
 * Runs ./deploy-apps (the repo-root entry point) with fake docker and kubectl first on PATH. The fakes
 * log their argv; `kubectl kustomize` goes to the real kubectl, so rendering is real.
 */
async function deployApps(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'deploy-apps-test-'));
  const log = join(dir, 'calls.log');
  const realKubectl = execFileSync('bash', ['-c', 'command -v kubectl'], { encoding: 'utf8' }).trim();
  const baseEnv = { ...process.env };
  delete baseEnv.DEPLOY_ENV;
  delete baseEnv.REGISTRY;
  delete baseEnv.TAG;
  try {
    let code = 0;
    let stdout = '';
    let stderr = '';
    try {
      ({ stdout, stderr } = await run(join(REPO, 'deploy-apps'), args, {
        cwd: REPO,
        env: {
          ...baseEnv,
          PATH: `${FAKES}:${process.env.PATH}`,
          FAKE_LOG: log,
          FAKE_DIR: dir,
          REAL_KUBECTL: realKubectl,
          ...env,
        },
        maxBuffer: 32 * 1024 * 1024,
        timeout: 60_000,
      }));
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      if (typeof e.code !== 'number') throw err;
      ({ code } = e);
      stdout = e.stdout ?? '';
      stderr = e.stderr ?? '';
    }
    const read = (f: string) => {
      try {
        return readFileSync(join(dir, f), 'utf8');
      } catch {
        return '';
      }
    };
    const calls = read('calls.log').split('\n').filter(Boolean);
    return { code, stdout, stderr, calls, applied: read('applied.yaml') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Asserts that `expected` patterns match calls in this order (other calls may come in between). */
function assertSequence(calls: string[], expected: RegExp[]) {
  let at = 0;
  for (const re of expected) {
    const i = calls.slice(at).findIndex((c) => re.test(c));
    assert.ok(i >= 0, `no call matching ${re} after position ${at}; calls:\n${calls.join('\n')}`);
    at += i + 1;
  }
}

const REAL = { REGISTRY: 'registry.test/acme', TAG: 'abc123' };

describe('deploy-apps', { skip }, () => {
  test('--help prints usage and exits 0', async () => {
    const r = await deployApps(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /usage: deploy-apps/);
  });

  for (const [args, message] of [
    [['go-app', 'frontend'], /unknown app: frontend/],
    [[], /no app given/],
    [['--overlay', 'staging', 'go-app'], /unknown overlay: staging/],
    [['--bogus', 'go-app'], /unknown option: --bogus/],
  ] as const) {
    test(`usage error (${message.source}) exits 2 and does nothing`, async () => {
      const r = await deployApps([...args], REAL);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: deploy-apps/);
      assert.deepEqual(r.calls, []);
    });
  }

  for (const [what, env, message] of [
    [
      'a newline in TAG',
      { TAG: 'abc\n    newName: attacker.example/evil' },
      /TAG=.* is not a valid image tag/,
    ],
    ['a quote in TAG', { TAG: 'abc"' }, /TAG=.* is not a valid image tag/],
    ['a tag starting with a dot', { TAG: '.hidden' }, /TAG=.* is not a valid image tag/],
    ['a tag of 129 characters', { TAG: 'a'.repeat(129) }, /TAG=.* is not a valid image tag/],
    [
      'a newline in REGISTRY',
      { REGISTRY: 'registry.test/acme\n    newName: attacker.example/evil' },
      /REGISTRY=.* is not a valid image repository prefix/,
    ],
    ['an upper-case path in REGISTRY', { REGISTRY: 'ghcr.io/Acme' }, /REGISTRY=.* is not a valid image/],
    ['a space in REGISTRY', { REGISTRY: 'ghcr.io/acme --flag' }, /REGISTRY=.* is not a valid image/],
    [
      'a malformed digest',
      { SKIP_BUILD: 'true', GO_APP_DIGEST: 'sha256:abc\n' },
      /GO_APP_DIGEST=.* is not a digest/,
    ],
  ] as const) {
    test(`${what} is refused before anything runs (exit 2)`, async () => {
      for (const args of [['go-app'], ['--dry-run', 'go-app']]) {
        const r = await deployApps(args, { ...REAL, ...env });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.deepEqual(r.calls, [], 'nothing was rendered, built or applied');
      }
    });
  }

  test('valid references pass: host:port, nested paths, separators', async () => {
    for (const env of [
      { REGISTRY: 'localhost:5000/a/b', TAG: 'v1.2.3_rc-1' },
      { REGISTRY: 'registry.example.test/team/sub__x', TAG: 'A' },
      { REGISTRY: 'acme', TAG: '0' },
    ]) {
      const r = await deployApps(['--dry-run', 'go-app'], env);
      assert.equal(r.code, 0, `${JSON.stringify(env)}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`image: ${env.REGISTRY}/go-app:${env.TAG}\n`));
    }
  });

  test('a real deploy without REGISTRY is a usage error before anything runs', async () => {
    const r = await deployApps(['go-app']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /REGISTRY is not set/);
    assert.deepEqual(r.calls, []);
  });

  test('--dry-run prints the plan and the rendered objects of the chosen apps only', async () => {
    const r = await deployApps(['--dry-run', 'go-app'], { TAG: 'abc123' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /plan: overlay=dev namespace=intake-dev tag=abc123/);
    assert.match(r.stdout, /build and push registry\.example\.test\/go-app:abc123/);
    assert.match(r.stdout, /wait for deployment\/go-app to roll out/);
    assert.doesNotMatch(r.stdout, /job\/intake-migrate/);
    const objects = parseManifests(
      r.stdout.slice(r.stdout.indexOf('--- rendered manifests')).replace(/^---.*\n/, ''),
    );
    const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    assert.ok(names.includes('Deployment/go-app'));
    assert.ok(names.includes('StatefulSet/nats'), 'shared objects are applied too');
    for (const other of ['Deployment/intake-api', 'Deployment/intake-worker', 'Job/intake-migrate']) {
      assert.ok(!names.includes(other), `${other}: apps not deployed are left out`);
    }
    const goApp = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'go-app')!;
    assert.equal(goApp.spec.template.spec.containers[0].image, 'registry.example.test/go-app:abc123');
    assert.deepEqual(
      r.calls.map((c) => c.split(' ').slice(0, 2).join(' ')),
      ['kubectl kustomize'],
      'a dry run renders and touches neither docker nor a cluster',
    );
  });

  test('--dry-run --overlay prod node-app api: one API rollout, migration planned first', async () => {
    const r = await deployApps(['--dry-run', '--overlay', 'prod', 'node-app', 'api'], REAL);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /namespace=intake /);
    assert.equal(r.stdout.match(/wait for deployment\/intake-api/g)?.length, 1);
    assert.match(r.stdout, /run job\/intake-migrate[^\n]*\n[^\n]*deployment\/intake-api/);
    assert.match(r.stdout, /image: registry\.test\/acme\/intake:abc123/);
  });

  test('real path: build, push, shared apply, migration, then apply + rollout status per app', async () => {
    const r = await deployApps(['go-app', 'api'], REAL);
    assert.equal(r.code, 0, r.stderr);
    const ns = '--namespace intake-dev';
    assertSequence(r.calls, [
      // Rendered first, so a broken overlay fails before a slow build.
      /^kubectl kustomize /,
      /^docker build .*-t registry\.test\/acme\/go-app:abc123 .*\/go-app$/,
      /^docker push registry\.test\/acme\/go-app:abc123$/,
      /^docker build .*-t registry\.test\/acme\/intake:abc123 /,
      /^docker push registry\.test\/acme\/intake:abc123$/,
      new RegExp(`^kubectl ${ns} apply -f \\S+ -l app.kubernetes.io/name notin \\(`),
      new RegExp(`^kubectl ${ns} wait --for=condition=Ready cluster/intake-pg`),
      new RegExp(`^kubectl ${ns} rollout status statefulset/nats`),
      new RegExp(`^kubectl ${ns} delete job intake-migrate --ignore-not-found`),
      new RegExp(`^kubectl ${ns} apply -f \\S+ -l app.kubernetes.io/name=intake-migrate$`),
      new RegExp(`^kubectl ${ns} wait --for=condition=complete job/intake-migrate`),
      new RegExp(`^kubectl ${ns} apply -f \\S+ -l app.kubernetes.io/name=go-app$`),
      new RegExp(`^kubectl ${ns} rollout status deployment/go-app`),
      new RegExp(`^kubectl ${ns} apply -f \\S+ -l app.kubernetes.io/name=intake-api$`),
      new RegExp(`^kubectl ${ns} rollout status deployment/intake-api`),
    ]);
    assert.equal(r.calls.filter((c) => c.startsWith('docker build')).length, 2, 'each image is built once');
    assert.ok(!r.calls.some((c) => c.includes('rollout undo')));
    // Deployed by the digest each image was pushed as (the fake's repo digest of repo:tag).
    for (const image of ['go-app', 'intake']) {
      const sum = createHash('sha256').update(`registry.test/acme/${image}:abc123`).digest('hex');
      assert.match(r.applied, new RegExp(`image: registry\\.test/acme/${image}@sha256:${sum}\n`));
    }
    assert.doesNotMatch(r.applied, /image: \S+:abc123/, 'no image is deployed by its tag');
    assert.doesNotMatch(r.applied, /some\.other\/mirror/, "another repository's digest is not taken");
  });

  test('a failed rollout is undone for that app only, later apps are not touched, exit 1', async () => {
    const r = await deployApps(['go-app', 'api', 'worker'], { ...REAL, FAKE_FAIL_ROLLOUT: 'intake-api' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /rollout of intake-api failed: rolling it back/);
    assertSequence(r.calls, [
      /rollout status deployment\/go-app/,
      /apply -f \S+ -l app.kubernetes.io\/name=intake-api$/,
      /rollout status deployment\/intake-api/,
      /rollout undo deployment\/intake-api$/,
    ]);
    assert.deepEqual(
      r.calls.filter((c) => c.includes('rollout undo')),
      ['kubectl --namespace intake-dev rollout undo deployment/intake-api'],
    );
    assert.ok(
      !r.calls.some((c) => /name=intake-worker|deployment\/intake-worker/.test(c)),
      'worker untouched',
    );
  });

  test('a failed migration stops before any app is rolled out', async () => {
    const r = await deployApps(['api'], { ...REAL, FAKE_FAIL_MIGRATE: '1' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /migration failed/);
    assert.ok(r.calls.some((c) => c.includes('logs job/intake-migrate')));
    assert.ok(!r.calls.some((c) => c.includes('name=intake-api') || c.includes('deployment/')));
  });

  test('SKIP_BUILD=true deploys prebuilt images without calling docker, by the digest given', async () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    const r = await deployApps(['worker'], { ...REAL, SKIP_BUILD: 'true', INTAKE_DIGEST: digest });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`use the prebuilt registry\\.test/acme/intake@${digest}`));
    assert.ok(!r.calls.some((c) => c.startsWith('docker')));
    assertSequence(r.calls, [
      /wait --for=condition=complete job\/intake-migrate/,
      /rollout status deployment\/intake-worker/,
    ]);
    assert.match(r.applied, new RegExp(`image: registry\\.test/acme/intake@${digest}\n`));
  });

  test('SKIP_BUILD=true without a digest deploys by tag, and says so', async () => {
    const r = await deployApps(['worker'], { ...REAL, SKIP_BUILD: 'true' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: registry\.test\/acme\/intake is deployed by its tag abc123/);
    assert.match(r.applied, /image: registry\.test\/acme\/intake:abc123/);
  });

  test('a push that yields no registry digest stops before the cluster is touched', async () => {
    const r = await deployApps(['go-app'], { ...REAL, FAKE_NO_DIGEST: '1' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no registry digest for registry\.test\/acme\/go-app:abc123 after the push/);
    assert.ok(!r.calls.some((c) => / apply /.test(c)));
  });

  test('a failed image build stops before the cluster is touched', async () => {
    const r = await deployApps(['go-app'], { ...REAL, FAKE_FAIL_DOCKER: 'build' });
    assert.notEqual(r.code, 0);
    // Reading the Secrets is all that happened in the cluster.
    assert.ok(
      !r.calls.some(
        (c) => c.startsWith('kubectl') && !c.startsWith('kubectl kustomize') && !/ get secret /.test(c),
      ),
    );
    assert.ok(!r.calls.some((c) => c.startsWith('docker push')));
  });

  test('a missing Secret of the overlay stops before anything is built or applied', async () => {
    const r = await deployApps(['--overlay', 'prod', 'api'], {
      ...REAL,
      FAKE_MISSING_SECRETS: 'intake-pii-master-key intake-pg-backup',
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /missing Secrets in namespace intake: intake-pg-backup intake-pii-master-key/);
    assert.ok(!r.calls.some((c) => c.startsWith('docker') || / apply /.test(c)));
    // Every Secret of the list was looked up, in the overlay's namespace.
    for (const name of ['intake-api-keys', 'intake-pg-api', 'intake-pg-worker', 'intake-smoke-key'])
      assert.ok(r.calls.includes(`kubectl --namespace intake get secret ${name} -o name`), name);
  });

  test('bash -n, and shellcheck when installed', async () => {
    const scripts = ['deploy/deploy-apps', 'test/deploy/fakes/kubectl', 'test/deploy/fakes/docker'].map((s) =>
      join(REPO, s),
    );
    for (const s of scripts) await run('bash', ['-n', s]);
    const hasShellcheck = (() => {
      try {
        execFileSync('shellcheck', ['--version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    if (hasShellcheck) await run('shellcheck', scripts);
    else console.log('# shellcheck not installed: only bash -n was run');
  });
});
