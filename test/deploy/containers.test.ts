import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { parse } from 'yaml';
import { baseImages, finalStage, instructions } from './dockerfile.ts';
import { imagePinned } from './k8s-policies.ts';
import { needTool, REPO } from './tools.ts';

// biome-ignore lint/suspicious/noExplicitAny: compose file content
type Any = any;

const read = (path: string) => readFileSync(join(REPO, path), 'utf8');

describe('Dockerfiles', () => {
  const files = ['Dockerfile', 'go-app/Dockerfile', 'deploy/nats/Dockerfile'];

  for (const f of files) {
    test(`${f}: base images pinned to a version, final stage runs as a numeric non-root user`, () => {
      // scratch is the empty image: nothing to pin.
      for (const image of baseImages(f).filter((i) => i !== 'scratch')) {
        assert.ok(
          imagePinned(image) && /:\D*\d/.test(image),
          `${f}: FROM ${image} is not pinned to a version`,
        );
      }
      const user = finalStage(f).findLast((i) => i.op === 'USER')?.args ?? '';
      assert.match(
        user,
        /^\d+(:\d+)?$/,
        `${f}: final USER "${user}" must be numeric (runAsNonRoot checks it)`,
      );
      assert.notEqual(user.split(':')[0], '0');
    });
  }

  test('every base image default is pinned by digest as well as by version', () => {
    for (const f of files) {
      for (const image of baseImages(f).filter((i) => i !== 'scratch'))
        assert.match(image, /^[a-z0-9./-]+:[\w.-]*\d[\w.-]*@sha256:[0-9a-f]{64}$/, `${f}: FROM ${image}`);
    }
  });

  test('intake: the runtime stage removes the package managers (npm, npx, corepack, yarn)', () => {
    const run = finalStage('Dockerfile')
      .filter((i) => i.op === 'RUN')
      .map((i) => i.args)
      .join(' ');
    for (const path of [
      '/usr/local/lib/node_modules/npm',
      '/usr/local/lib/node_modules/corepack',
      '/usr/local/bin/npm',
      '/usr/local/bin/npx',
      '/usr/local/bin/corepack',
      '/usr/local/bin/yarn',
      '/opt/yarn-v*',
    ])
      assert.ok(run.includes(path), `the runtime stage does not remove ${path}`);
  });

  test('every base image is a build argument whose default is the official image', () => {
    for (const [f, arg] of [
      ['Dockerfile', 'NODE_IMAGE'],
      ['go-app/Dockerfile', 'GO_IMAGE'],
      ['deploy/nats/Dockerfile', 'NATS_IMAGE'],
    ] as const) {
      const froms = instructions(f).filter((i) => i.op === 'FROM' && !i.args.startsWith('scratch'));
      assert.ok(froms.length > 0);
      for (const from of froms)
        assert.match(from.args, new RegExp(`^\\$\\{${arg}\\}`), `${f}: FROM ${from.args}`);
      assert.ok(
        instructions(f).some((i) => i.op === 'ARG' && i.args.startsWith(`${arg}=`)),
        `${f}: ARG ${arg}=…`,
      );
    }
  });

  test('intake: multi-stage build, production dependencies only, runs dist/cli.js start', () => {
    assert.ok(baseImages('Dockerfile').length >= 3, 'build, prod-deps and runtime stages');
    assert.ok(
      baseImages('Dockerfile').every((i) => i.startsWith('node:24')),
      'containers run Node 24',
    );
    const text = read('Dockerfile');
    assert.match(text, /npm ci --omit=dev/);
    assert.match(text, /npm run build/);
    const last = finalStage('Dockerfile');
    assert.ok(
      !last.some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args)),
      'no npm install in the runtime stage',
    );
    assert.deepEqual(JSON.parse(last.find((i) => i.op === 'ENTRYPOINT')!.args), ['node', 'dist/cli.js']);
    assert.deepEqual(JSON.parse(last.find((i) => i.op === 'CMD')!.args), ['start']);
    assert.ok(
      last.some((i) => i.op === 'COPY' && /\bsql\b/.test(i.args)),
      'migrations (sql/) ship with the image: intake migrate reads them at run time',
    );
  });

  test('intake: every path COPY takes from the build context is let through by .dockerignore', () => {
    const allowed = read('.dockerignore')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    assert.equal(
      read('.dockerignore')
        .split('\n')
        .find((l) => l && !l.startsWith('#')),
      '*',
      'allow-list style',
    );
    for (const { op, args } of instructions('Dockerfile')) {
      if (op !== 'COPY' || args.includes('--from')) continue;
      const sources = args.split(/\s+/).slice(0, -1);
      for (const s of sources) {
        assert.ok(allowed.includes(s.replace(/\/$/, '')), `COPY ${s}: excluded by .dockerignore`);
        assert.ok(existsSync(join(REPO, s)), `COPY ${s}: no such path in the repository`);
      }
    }
  });

  test('go-app: static, stripped binary on a distroless or scratch base', () => {
    const text = read('go-app/Dockerfile');
    assert.match(text, /CGO_ENABLED=0/);
    assert.match(text, /-trimpath/);
    assert.match(text, /-ldflags='-s -w'/);
    assert.match(baseImages('go-app/Dockerfile').at(-1)!, /^(gcr\.io\/distroless\/static|scratch)/);
  });

  test('nats: JetStream config with a file store, lame duck timings and HTTP monitoring', () => {
    assert.match(baseImages('deploy/nats/Dockerfile')[0]!, /^nats:2\.10\.\d+-alpine@sha256:[0-9a-f]{64}$/);
    const conf = read('deploy/nats/nats.conf');
    assert.match(conf, /jetstream\s*\{[^}]*store_dir:\s*\/data[^}]*max_file_store/s);
    assert.match(conf, /^lame_duck_duration:\s*\d+s/m);
    assert.match(conf, /^http_port:\s*8222/m);
  });

  // The Kubernetes configuration needs its Secrets' files: test/security/nats-roles.test.ts runs it.
  test("the compose nats.conf is accepted by nats-server -t with compose.yaml's environment", {
    skip: needTool('nats-server'),
  }, () => {
    const compose: Any = parse(read('compose.yaml'), { merge: true });
    // Compose turns $$ into $ before the container sees it.
    const env = Object.fromEntries(
      Object.entries<string>(compose.services.nats.environment).map(([k, v]) => [k, v.replace(/\$\$/g, '$')]),
    );
    const r = spawnSync('nats-server', ['-c', join(REPO, 'deploy/nats/nats.conf'), '-t'], {
      env: { PATH: process.env.PATH, ...env },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
    const bare = spawnSync('nats-server', ['-c', join(REPO, 'deploy/nats/nats.conf'), '-t'], {
      env: { PATH: process.env.PATH },
      encoding: 'utf8',
    });
    assert.notEqual(bare.status, 0, 'without the password hashes the server must not start (no open server)');
  });

  test('compose and Kubernetes NATS grant the same permissions (one file, two copies)', () => {
    const blocks = (f: string) => read(f).slice(read(f).indexOf('API_PERMISSIONS'));
    assert.equal(blocks('deploy/nats/permissions.conf'), blocks('deploy/k8s/base/nats/permissions.conf'));
  });
});

describe('compose.yaml', () => {
  // What compose reads when the environment sets nothing: ${NAME:-default} → default.
  const compose: Any = parse(read('compose.yaml').replace(/\$\{\w+:-([^}]*)\}/g, '$1'), { merge: true });
  const s = compose.services;

  test('runs the whole stack: postgres, nats, migrate, maintain, api, worker, go-app', () => {
    assert.deepEqual(Object.keys(s).sort(), [
      'api',
      'go-app',
      'maintain',
      'migrate',
      'nats',
      'postgres',
      'worker',
    ]);
    assert.match(s.postgres.image, /^postgres:16(\.|-|$)/);
    assert.ok(s.postgres.healthcheck?.test, 'postgres has a healthcheck');
    assert.equal(s.nats.build, 'deploy/nats');
    assert.ok(s.nats.healthcheck?.test, 'nats has a healthcheck');
  });

  test('migrate runs once after postgres is healthy; api and worker wait for it and for nats', () => {
    assert.deepEqual(s.migrate.command, ['migrate']);
    assert.equal(s.migrate.restart, 'no');
    assert.equal(s.migrate.depends_on.postgres.condition, 'service_healthy');
    for (const name of ['api', 'worker']) {
      assert.equal(s[name].depends_on.migrate.condition, 'service_completed_successfully', name);
      assert.equal(s[name].depends_on.nats.condition, 'service_healthy', name);
      assert.equal(s[name].environment.NATS_URL, 'nats://nats:4222', name);
    }
    assert.equal(s.api.environment.PORT, '8080');
    assert.equal(s.worker.environment.PORT, '8081');
  });

  test('maintain keeps partitions ahead as the owner (the worker may not), hourly, without NATS', () => {
    assert.deepEqual(s.maintain.command, ['maintain', '--every', '3600']);
    assert.equal(s.maintain.restart, 'unless-stopped');
    assert.equal(s.maintain.depends_on.migrate.condition, 'service_completed_successfully');
    assert.equal(s.maintain.environment.DATABASE_URL, s.migrate.environment.DATABASE_URL);
    assert.deepEqual(
      Object.keys(s.maintain.environment).filter((k) => k.startsWith('NATS_')),
      [],
    );
  });

  test('NATS runs read-only without capabilities; its pid file goes to a tmpfs it owns', () => {
    assert.equal(s.nats.read_only, true);
    assert.deepEqual(s.nats.cap_drop, ['ALL']);
    assert.ok(s.nats.tmpfs.some((t: string) => /^\/var\/run\/nats:.*uid=10002/.test(t)));
  });

  test('app containers are hardened and get more than their drain time to stop', () => {
    for (const name of ['migrate', 'maintain', 'api', 'worker', 'go-app']) {
      assert.equal(s[name].read_only, true, name);
      assert.match(String(s[name].user), /^[1-9]\d*:\d+$/, name);
      assert.deepEqual(s[name].cap_drop, ['ALL'], name);
    }
    const grace = Number.parseInt(s.api.stop_grace_period, 10);
    const drain = (Number(s.api.environment.INTAKE_SHUTDOWN_DELAY_MS ?? 0) + 25_000) / 1000;
    assert.ok(grace > drain, `stop_grace_period ${grace}s <= drain ${drain}s`);
  });

  test('least privilege: migrate as the owner, api and worker as their roles, each its own NATS user', () => {
    const user = (name: string) => new URL(s[name].environment.DATABASE_URL).username;
    assert.equal(user('migrate'), 'intake');
    assert.equal(user('api'), 'intake_api');
    assert.equal(user('worker'), 'intake_worker');
    assert.notEqual(s.postgres.environment.POSTGRES_USER, 'intake', 'the owner is not the superuser');
    const roles = read('deploy/postgres/compose-roles.sql');
    for (const role of ['intake', 'intake_api', 'intake_worker']) {
      const password = decodeURIComponent(
        new URL(s[role === 'intake' ? 'migrate' : role.slice(7)].environment.DATABASE_URL).password,
      );
      assert.ok(roles.includes(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`), role);
    }
    assert.match(roles, /ALTER DATABASE intake OWNER TO intake;/);
    assert.ok(
      s.postgres.volumes.some((v: string) => v.endsWith(':/docker-entrypoint-initdb.d/10-roles.sql:ro')),
      'the roles script runs at the first start',
    );
    for (const [name, natsUser] of [
      ['migrate', 'intake-provision'],
      ['api', 'intake-api'],
      ['worker', 'intake-worker'],
    ] as const) {
      const env = s[name].environment;
      assert.equal(env.NATS_USER, natsUser, name);
      assert.equal(env.NATS_INBOX_PREFIX, `_INBOX.${natsUser}`, name);
      const hash = s.nats.environment[`NATS_${natsUser.slice(7).toUpperCase()}_PASSWORD_HASH`];
      const bare = String(hash).replace(/\$\$/g, '$').replace(/^"|"$/g, '');
      assert.ok(bcrypt.compareSync(env.NATS_PASSWORD, bare), `${name}: the server's hash is of its password`);
    }
  });

  test('the worker gets neither the API keys nor the PII master key', () => {
    const env = s.worker.environment;
    for (const k of [
      'INTAKE_PII_MASTER_KEY',
      'INTAKE_PII_MASTER_KEY_FILE',
      'INTAKE_API_KEYS',
      'INTAKE_API_KEYS_FILE',
    ])
      assert.equal(env[k], undefined, k);
    assert.equal(s.worker.secrets, undefined);
    assert.deepEqual(s.api.secrets.sort(), ['intake_api_keys', 'intake_pii_master_key']);
  });

  test('images are pinned and secret files exist', () => {
    for (const [name, svc] of Object.entries<Any>(s)) {
      assert.ok(imagePinned(svc.image) || svc.build, `${name}: image ${svc.image} is not pinned`);
    }
    for (const secret of Object.values<Any>(compose.secrets)) assert.ok(existsSync(join(REPO, secret.file)));
  });

  test('docker compose config accepts it (compose v2 plugin, or Debian docker-compose v1)', (t) => {
    // Validation needs no engine. The compose plugin is tried first, then Debian's docker-compose
    // (which .ci/run installs); only outside CI may the test skip when neither exists.
    const v2 = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
    const cmd = !v2.error && v2.status === 0 ? ['docker', 'compose'] : ['docker-compose'];
    const probe = spawnSync(cmd[0]!, [...cmd.slice(1), 'version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) {
      if (process.env.CI === 'true')
        assert.fail('neither `docker compose` nor `docker-compose` is installed');
      t.skip('neither `docker compose` nor `docker-compose` is installed');
      return;
    }
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), '-f', join(REPO, 'compose.yaml'), 'config', '--quiet'], {
      encoding: 'utf8',
      cwd: REPO,
    });
    assert.equal(r.status, 0, r.stderr);
  });
});
