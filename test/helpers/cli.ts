import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** bin/intake.js, the CLI as an operator runs it. */
export const INTAKE_BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

/** Runs `intake <args>` as a subprocess with `env`; resolves with its exit code and output. */
export function runIntake(
  env: NodeJS.ProcessEnv,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [INTAKE_BIN, ...args], { env, timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}
