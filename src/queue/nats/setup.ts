import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Logger } from '../../ops/logger.ts';
import { natsConnectOptions } from './auth.ts';
import { NatsProvisionError, provisionQueue } from './provision.ts';
import type { NatsQueueSettings } from './settings.ts';

/** How long `intake migrate` keeps trying while NATS has no JetStream leader yet (a fresh cluster). */
const SETUP_DEADLINE_MS = 60_000;

/**
 * Creates the stream, the writer's consumer, the idempotency bucket and the probe stream, or brings
 * their settings in line with the configuration, then disconnects: `intake migrate` does this before a
 * rollout, as the one identity whose NATS user may create and update them (deploy/k8s/base/nats/
 * permissions.conf); the API and the worker then only check them. A conflict (NatsProvisionError)
 * fails at once; anything else (no quorum yet, a timeout) is retried until SETUP_DEADLINE_MS.
 */
export async function setUpNatsQueue(settings: NatsQueueSettings, log: Logger): Promise<void> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const nc = await connect({
        servers: settings.servers,
        name: 'intake-migrate',
        timeout: 5000,
        ...natsConnectOptions(settings.nats),
      });
      try {
        // No $JS.API.INFO request (checkAPI): the provisioning user may not send one.
        const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
        await provisionQueue(jsm, settings.nats, { maxDeliver: settings.maxDeliver }, log);
        return;
      } finally {
        await nc.close().catch(() => {});
      }
    } catch (err) {
      if (err instanceof NatsProvisionError || Date.now() - started > SETUP_DEADLINE_MS) throw err;
      log.warn({ err, attempt }, 'NATS provisioning failed; retrying');
      await sleep(Math.min(5000, 500 * attempt));
    }
  }
}
