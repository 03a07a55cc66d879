import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { API_SCHEMAS, Problem } from '../contract/api-schemas.ts';
import { ERROR_CODES } from '../contract/error-codes.ts';
import { IncomingBatch, IncomingMessage } from '../contract/message-schema.ts';
import { ERRORS } from './error-registry.ts';

/**
 * The OpenAPI 3.1 document is generated from the same TypeBox schemas the routes validate and
 * serialise with, so documentation and behaviour cannot drift. Served at /openapi.json, with Swagger UI
 * at /docs. Named schemas are registered once (app.addSchema) and referenced by `$id`, which the
 * document turns into `#/components/schemas/<id>`: a tool reading the document finds every reference
 * (swagger-parser, redocly, openapi-typescript and Prism check it in test/http/openapi.test.ts).
 */
const SHARED = [IncomingMessage, IncomingBatch, ...API_SCHEMAS];

const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  for (const schema of SHARED) app.addSchema(schema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'intake',
        version: VERSION,
        description:
          'JSON message ingestion: POST a message, it is validated, queued durably (202) and stored in ' +
          'PostgreSQL. Errors are RFC 9457 problem details (docs/errors.md says what each status promises).',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        contact: { name: 'intake maintainers', url: 'https://github.com/example/intake/issues' },
      },
      servers: [{ url: '/', description: 'this intake instance' }],
      // Every operation names one of these (test/http/openapi.test.ts; Spectral's operation-tags).
      tags: [
        { name: 'ingest', description: 'Send messages (scope `ingest`)' },
        { name: 'messages', description: 'Read stored messages (scope `read`)' },
        { name: 'privacy', description: 'GDPR export, erasure and reveal, audited (scope `privacy`)' },
        { name: 'dead-letters', description: 'Messages that could not be stored (scope `admin`)' },
        { name: 'operations', description: 'Probes and metrics, no API key' },
      ],
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'API key (intake keys create)' },
        },
      },
    },
    // Components are named by their $id, not def-0, def-1…
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

/**
 * Documents who may call each route: routes with a scope need an API key (`security: apiKey`); the
 * others (health, metrics, docs) are open (`security: []`). Call before any route is added.
 */
export function documentSecurity(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    if (!route.schema) return;
    const scoped = (route.config as { scope?: string } | undefined)?.scope !== undefined;
    route.schema = { ...route.schema, security: scoped ? [{ apiKey: [] }] : [] } as typeof route.schema;
  });
}

/** A reference to a schema registered by registerOpenApi (`{ $ref: '<id>#' }`). */
export function ref(schema: TSchema): { $ref: string } {
  return { $ref: `${schema.$id}#` };
}

const retryAfter = {
  'retry-after': { type: 'integer', description: 'Seconds to wait before retrying' },
};
const rateLimitHeaders = {
  'ratelimit-limit': { type: 'integer', description: "The key's burst (token bucket size)" },
  'ratelimit-remaining': { type: 'integer', description: 'Tokens (messages) left now' },
  'ratelimit-reset': { type: 'integer', description: 'Seconds until the bucket is full again' },
};

/** W3C trace context on every answer of an ingest or read route (docs/tracing.md). */
export const traceHeaders = {
  traceparent: {
    type: 'string',
    pattern: '^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$',
    description:
      "W3C traceparent of intake's span for this request: the caller's trace (a new one when it sent no " +
      'valid traceparent), a new span id',
  },
  tracestate: { type: 'string', description: 'The W3C tracestate that came with a valid traceparent' },
};

/** A JSON answer: its description, schema and headers. */
export function jsonResponse(description: string, schema: unknown, headers?: Record<string, unknown>) {
  return { description, content: { 'application/json': { schema } }, ...(headers ? { headers } : {}) };
}

/** Problem answers for the given statuses, each described by the codes that use it. */
export function problemResponses(...statuses: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {};
  for (const status of statuses) {
    const codes = ERROR_CODES.filter((c) => ERRORS[c].status === status);
    // A 429's Retry-After is the bucket's own; other statuses have one where a code's row sets it.
    const headers =
      status === 429
        ? { ...retryAfter, ...rateLimitHeaders }
        : codes.some((c) => ERRORS[c].retryAfterS !== undefined)
          ? retryAfter
          : undefined;
    out[status] = {
      description: codes.map((c) => `${c}: ${ERRORS[c].title}`).join('; '),
      content: { 'application/problem+json': { schema: ref(Problem) } },
      ...(headers ? { headers } : {}),
    };
  }
  return out;
}

/** The problems any route with an API-key scope can answer, besides its own. */
export const AUTH_PROBLEMS = [401, 403, 429];

export { rateLimitHeaders };
