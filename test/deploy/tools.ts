import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Repository root (test/deploy/../..). */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Whether an external tool the deploy tests need is on PATH. Returns a skip reason when it is not;
 * under CI=true a missing tool is an error instead, so CI can never go green by skipping.
 */
export function needTool(name: string, versionArgs: string[] = ['--version']): string | undefined {
  const r = spawnSync(name, versionArgs, { stdio: 'ignore' });
  if (!r.error && r.status === 0) return undefined;
  const reason = `${name} is not installed (${r.error?.message ?? `exit ${r.status}`})`;
  if (process.env.CI === 'true') throw new Error(`${reason}: CI must provide it`);
  console.log(`# skipping: ${reason}`);
  return reason;
}
