import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';

/**
 * Helpers for the container suite (`npm run test:containers`, scripts/containers/run-suite.sh), which
 * builds the images first and passes their tags in the environment. Everything here talks to the
 * engine in DOCKER_HOST through the docker CLI, as an operator would.
 */
const exec = promisify(execFile);

/** Image tags, as scripts/containers/run-suite.sh built them. */
export const IMAGES = {
  intake: process.env.INTAKE_IMAGE ?? 'intake:local',
  goApp: process.env.GO_APP_IMAGE ?? 'go-app:local',
  nats: process.env.NATS_IMAGE_TAG ?? 'intake-nats:local',
  postgres: process.env.POSTGRES_IMAGE ?? 'postgres:16.9-bookworm',
};

/** Fails the whole file with the way to run it when no engine answers or an image is missing. */
export function requireImages(): void {
  const v = spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' });
  if (v.status !== 0)
    throw new Error(`no Docker engine answers (${v.stderr.trim()}): run \`npm run test:containers\``);
  for (const image of Object.values(IMAGES)) {
    const r = spawnSync('docker', ['image', 'inspect', image], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`image ${image} is missing: run \`npm run test:containers\``);
  }
}

export async function docker(
  args: string[],
  opts: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec('docker', args, {
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, ...opts.env },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `docker …` that must succeed. */
export async function dockerOk(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await docker(args, opts);
  assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** A name unique to this run, for containers, networks and compose projects. */
export const uniqueName = (label: string) => `intake-t-${label}-${randomBytes(3).toString('hex')}`;

/**
 * The hardening every container of ours runs with here, as in compose and Kubernetes, and the label
 * by which scripts/containers/run-suite.sh finds containers an interrupted run left behind.
 */
export const HARDENED = [
  '--label',
  'intake-test=1',
  '--read-only',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges:true',
];

/**
 * `docker run -d` a container that is removed (with its anonymous volumes) when the test ends, whatever
 * happened; returns its name.
 */
export async function runDetached(t: TestContext, label: string, args: string[]): Promise<string> {
  const name = uniqueName(label);
  t.after(async () => {
    await docker(['rm', '--force', '--volumes', name]);
  });
  await dockerOk(['run', '--detach', '--name', name, ...args]);
  return name;
}

export interface ContainerState {
  Status: string;
  ExitCode: number;
  OOMKilled: boolean;
  Health?: { Status: string };
}

export async function state(name: string): Promise<ContainerState> {
  return JSON.parse(await dockerOk(['inspect', '--format', '{{json .State}}', name])) as ContainerState;
}

/** Waits for an HTTP endpoint to answer 200; fails early with the container's log if it exits. */
export async function waitHttp(name: string, url: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    `${url} (${name}) to answer 200`,
    async () => {
      const s = await state(name);
      if (s.Status === 'exited' || s.Status === 'dead')
        throw new Error(`${name} exited ${s.ExitCode}:\n${await logs(name)}`);
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      return r.status === 200;
    },
    timeoutMs,
    200,
  );
}

export async function logs(name: string): Promise<string> {
  const r = await docker(['logs', '--tail', '80', name]);
  return `${r.stdout}${r.stderr}`;
}

/** An API key for the production-mode containers here, and the INTAKE_API_KEYS entry admitting it. */
export function testKey(): { key: string; keysJson: string } {
  const { key, entry } = generateKey('container-test', ['ingest', 'read', 'privacy']);
  return { key, keysJson: JSON.stringify([entry]) };
}

/** The size of an image in MB (as `docker images` reports it). */
export async function imageSizeMb(image: string): Promise<number> {
  return Number(await dockerOk(['image', 'inspect', '--format', '{{.Size}}', image])) / 1e6;
}

/** `-e NAME=value` for each entry. */
export const envArgs = (env: Record<string, string>) =>
  Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);

/**
 * The arguments of `docker run` for an intake container in production mode on the host's network (so
 * it reaches the test PostgreSQL and NATS on 127.0.0.1), hardened, with a fresh API key and PII key.
 */
export function intakeArgs(command: string, env: Record<string, string>): { key: string; args: string[] } {
  const { key, keysJson } = testKey();
  const args = [
    ...['--network', 'host', ...HARDENED, '--tmpfs', '/tmp'],
    ...envArgs({
      HOST: '127.0.0.1',
      INTAKE_API_KEYS: keysJson,
      INTAKE_PII_MASTER_KEY: randomBytes(32).toString('base64'),
      ...env,
    }),
    IMAGES.intake,
    command,
  ];
  return { key, args };
}
