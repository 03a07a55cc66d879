// Entry point of the pod watcher (bin/pod-watcher.js; `node dist/pod-watcher/main.js` in the image).
// Exit codes: 0 after SIGTERM/SIGINT, 1 when leadership is lost or startup fails (Kubernetes restarts the
// pod, which then campaigns again from a clean state, as client-go controllers do), 78 on bad configuration
// (as intake: EX_CONFIG),
// 70 when the shutdown passed its deadline (src/ops/process-exit.ts).

import { ConfigError } from '../config.ts';
import { createLogger } from '../ops/logger.ts';
import { ExitCode, exitProcess, handleSignals } from '../ops/process-exit.ts';
import { Shutdown } from '../ops/shutdown.ts';
import { loadConfig } from './config.ts';
import { loadKubeConfig } from './kube-client.ts';
import { buildPodWatcher } from './pod-watcher.ts';

/** Longest a shutdown may take; well inside the Deployment's 30 s terminationGracePeriodSeconds. */
const SHUTDOWN_TIMEOUT_MS = 15_000;

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      return exitProcess(ExitCode.config, {
        name: 'pod-watcher',
        // One line for every problem: a log collector keeps it together.
        line: `pod-watcher: invalid configuration: ${err.problems.join('; ')}`,
      });
    }
    throw err;
  }

  const logger = createLogger({ name: 'pod-watcher', level: config.logLevel });
  const watcher = buildPodWatcher(config, { logger, kubeConfig: loadKubeConfig() });

  // If a stage hangs (an API server that never answers), exit anyway rather than be SIGKILLed mid-way.
  const shutdown = new Shutdown(logger, SHUTDOWN_TIMEOUT_MS);
  shutdown.add('pod watcher', () => watcher.stop());
  const shutdownAndExit = handleSignals({ name: 'pod-watcher', log: logger, shutdown });

  await watcher.start();
  const outcome = await watcher.done;
  if (outcome === 'lost') await shutdownAndExit('leadership lost', ExitCode.failure);
}

main().catch((err: unknown) =>
  exitProcess(ExitCode.failure, {
    name: 'pod-watcher',
    line: `pod-watcher: ${err instanceof Error ? err.stack : String(err)}`,
  }),
);
