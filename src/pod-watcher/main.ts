// Entry point of the pod watcher (bin/pod-watcher.js; `node dist/pod-watcher/main.js` in the image).
// Exit codes: 0 after SIGTERM/SIGINT, 1 when leadership is lost or startup fails (Kubernetes restarts the
// pod, which then campaigns again from a clean state, as client-go controllers do), 2 on bad configuration.
import { createLogger } from '../ops/logger.ts';
import { ConfigError, loadConfig } from './config.ts';
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
      process.stderr.write(`pod-watcher: invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  const logger = createLogger({ name: 'pod-watcher', level: config.logLevel });
  const watcher = buildPodWatcher(config, { logger, kubeConfig: loadKubeConfig() });

  let exiting = false;
  const shutdown = async (reason: string, code: number) => {
    if (exiting) return;
    exiting = true;
    logger.info({ reason }, 'shutting down');
    // If a stage hangs (an API server that never answers), exit anyway rather than be SIGKILLed mid-way.
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out');
      process.exit(code || 1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    try {
      await watcher.stop();
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      code ||= 1;
    }
    logger.info({ code }, 'exiting');
    // pino writes to stdout synchronously by default, so nothing is lost by exiting right away.
    process.exit(code);
  };

  process.once('SIGTERM', () => void shutdown('SIGTERM', 0));
  process.once('SIGINT', () => void shutdown('SIGINT', 0));

  await watcher.start();
  const outcome = await watcher.done;
  if (outcome === 'lost') await shutdown('leadership lost', 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`pod-watcher: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
