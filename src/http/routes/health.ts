import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app-deps.ts';

const Live = Type.Object({ status: Type.Literal('ok') });
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not ready')]),
  checks: Type.Object({
    draining: Type.Boolean({ description: 'Shutting down: load balancers should stop sending' }),
    queue: Type.Boolean({ description: 'A publish can succeed now' }),
  }),
});
const json = (description: string, schema: unknown) => ({
  description,
  content: { 'application/json': { schema } },
});

/** Liveness, readiness and the Prometheus exposition (no API key: probes and scrapers call them). */
export async function healthRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  // Alive as long as the event loop answers: restarting would not fix a queue or database outage.
  app.get(
    '/livez',
    {
      schema: {
        operationId: 'livez',
        tags: ['operations'],
        summary: 'Liveness',
        description:
          'Answers 200 while the event loop runs. A queue or database outage does not fail it: a restart ' +
          'would not fix those.',
        response: { 200: json('The process answers', Live) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Readiness: 503 while draining or while the queue cannot take messages',
        description:
          'Ready (200) unless shutting down or the queue cannot take a message now; otherwise 503 with ' +
          'Retry-After, so load balancers send elsewhere.',
        response: {
          200: json('Ready', Ready),
          503: {
            ...json('Not ready', Ready),
            headers: { 'retry-after': { type: 'integer', description: 'Seconds before asking again' } },
          },
        },
      },
    },
    async (_req, reply) => {
      const checks = { draining: deps.lifecycle.draining, queue: deps.queue.isReady() };
      const ready = !checks.draining && checks.queue;
      deps.metrics.ready.set(ready ? 1 : 0);
      if (!ready) reply.code(503).header('retry-after', '1');
      return { status: ready ? ('ready' as const) : ('not ready' as const), checks };
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'metrics',
        tags: ['operations'],
        summary: 'Prometheus metrics (text exposition format)',
        description: "This process's metrics for Prometheus to scrape (docs/alerting.md).",
        response: {
          200: { description: 'Metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
    async (_req, reply) => {
      reply.type(deps.metrics.registry.contentType);
      return deps.metrics.registry.metrics();
    },
  );
}
