import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app.ts';

/** Liveness, readiness and the Prometheus exposition. */
export async function healthRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  // Alive as long as the event loop answers: restarting would not fix a queue or database outage.
  app.get('/livez', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_req, reply) => {
    const checks = { draining: deps.lifecycle.draining, queue: deps.queue.isReady() };
    const ready = !checks.draining && checks.queue;
    deps.metrics.ready.set(ready ? 1 : 0);
    if (!ready) reply.code(503).header('retry-after', '1');
    return { status: ready ? 'ready' : 'not ready', checks };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
}
