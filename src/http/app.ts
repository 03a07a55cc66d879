import { randomUUID } from 'node:crypto';
import type { Ajv } from 'ajv';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { createAjv, toViolations, type Violation } from '../contract/validator.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { IpProtector } from '../privacy/ip-protector.ts';
import type { QueueProducer } from '../queue/queue.ts';
import { QueueUnavailableError } from '../queue/queue.ts';
import type { Pool } from '../store/pool.ts';
import { type AuthOptions, registerAuth } from './auth.ts';
import { registerConnectionHandling } from './connections.ts';
import { registerJsonParser } from './content-type.ts';
import { registerOpenApi } from './openapi.ts';
import { ERRORS, type ErrorCode, ProblemError, problemBody } from './problem.ts';
import { healthRoutes } from './routes/health.ts';
import { messageRoutes } from './routes/messages.ts';
import { privacyRoutes } from './routes/privacy.ts';
import { checkingIntervalMs } from './server-timeouts.ts';

/** What the HTTP edge needs from the rest of intake. Built by runtime.ts; tests build their own. */
export interface AppDeps {
  queue: QueueProducer;
  /** Read side (GET routes). */
  db: Pool;
  metrics: Metrics;
  log: Logger;
  ipProtector: IpProtector;
  /** Top-level `message` keys that are personal data (INTAKE_PII_MESSAGE_FIELDS). */
  piiFields: readonly string[];
  /** Readiness of the parts behind the API (queue reachable, not draining). */
  lifecycle: Lifecycle;
  auth: AuthOptions;
  /** `all` for the API; `ops` (health, metrics) for a worker-only process. */
  routes: 'all' | 'ops';
  options: {
    bodyLimit: number;
    publishTimeoutMs: number;
    requestTimeoutMs: number;
    headersTimeoutMs: number;
    lingeringTimeMs: number;
    lingeringTimeoutMs: number;
  };
}

/** Shared shutdown state, read by /readyz and every response. */
export class Lifecycle {
  /** Set when SIGTERM arrives: /readyz answers 503 so load balancers stop sending new work. */
  draining = false;
  /** Set when the listener closes: each response then carries `Connection: close`. */
  closing = false;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Builds the Fastify app (routes, parsers, errors, access log). Listening is the caller's business. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    bodyLimit: deps.options.bodyLimit,
    requestTimeout: deps.options.requestTimeoutMs,
    http: { connectionsCheckingInterval: checkingIntervalMs(deps.options) },
    keepAliveTimeout: 65_000, // above typical load balancer idle timeouts (60 s), so the LB closes first
    // Requests that reach a connection this server already accepted are served while it closes (with
    // `Connection: close`), as Go's http.Server.Shutdown does; new connections are refused by the
    // closed listener and a load balancer retries those elsewhere. Idle sockets are swept by
    // runtime.ts after a grace period, not at once: a just-accepted socket whose request is still on
    // the wire counts as idle to Node, and closing it would reset a request the client already sent.
    return503OnClosing: false,
    forceCloseConnections: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
    ajv: { customOptions: {} },
  });
  registerConnectionHandling(app, deps.options);

  // Bodies are validated by intake's own Ajv (custom keywords, allErrors, no coercion, no stripping);
  // query strings by a second instance that coerces "50" to 50 as query parameters need.
  const bodyAjv = createAjv();
  const queryAjv: Ajv = createAjv();
  queryAjv.opts.coerceTypes = true;
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? bodyAjv : queryAjv).compile(schema as object),
  );
  registerJsonParser(app);

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    // Once the listener is closed, each kept-alive connection is closed after its next response, so
    // clients reconnect to another replica. Not earlier: while the listener is still open, closing
    // connections makes balancers open new ones here, and connections still in the kernel's accept
    // queue when the listener closes are reset with their request.
    if (deps.lifecycle.closing) reply.header('connection', 'close');
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const seconds = reply.elapsedTime / 1000;
    deps.metrics.httpRequests.inc({ route, method: req.method, status: reply.statusCode });
    deps.metrics.httpDuration.observe({ route, method: req.method }, seconds);
    // One access-log line per request. The route pattern, never the raw URL: paths such as
    // /v1/subjects/ip/{ip} would otherwise write personal data to the log.
    deps.log.info(
      {
        reqId: req.id,
        method: req.method,
        route,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        client: req.client ?? 'anonymous',
        bytesIn: Number(req.headers['content-length'] ?? 0),
      },
      'request',
    );
  });

  registerAuth(app, deps.auth);

  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, 'NOT_FOUND', `no route for ${req.method} ${req.routeOptions.url ?? 'this path'}`);
  });

  app.setErrorHandler((err: FastifyError | ProblemError | Error, req, reply) => {
    // Loss accounting (metrics.ts): every message counted as received ends as accepted, duplicate or
    // rejected. Errors before the count (401, 413, 415, 429) are not messages received.
    if (req.ingestCount) deps.metrics.rejected.inc({ reason: rejectionReason(err) }, req.ingestCount);
    if (err instanceof ProblemError) {
      if (err.extra.retryAfterS !== undefined) reply.header('retry-after', String(err.extra.retryAfterS));
      for (const [k, v] of Object.entries(err.extra.headers ?? {})) reply.header(k, v);
      return sendProblem(reply, err.code, err.message, err.extra.errors);
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const violations = toViolations(fe.validation as never);
      if (fe.validationContext === 'body') {
        const n = violations.length;
        return sendProblem(
          reply,
          'INVALID_MESSAGE',
          `${n} violation${n === 1 ? '' : 's'} of the message contract`,
          violations,
        );
      }
      const errors = violations.map((v) => ({ pointer: v.pointer, detail: `query parameter ${v.detail}` }));
      return sendProblem(reply, 'INVALID_REQUEST', 'invalid query parameters', errors);
    }
    if (err instanceof QueueUnavailableError) {
      reply.header('retry-after', '1');
      return sendProblem(reply, 'QUEUE_UNAVAILABLE', `${err.message}; retry shortly`);
    }
    switch (fe.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(reply, 'BODY_TOO_LARGE', `the body exceeds ${deps.options.bodyLimit} bytes`);
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        if (fe.statusCode === 415)
          return sendProblem(reply, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
        break;
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return sendProblem(reply, 'INVALID_JSON', 'the body is empty');
    }
    if (isDatabaseDown(err)) {
      reply.header('retry-after', '2');
      return sendProblem(reply, 'DATABASE_UNAVAILABLE', 'the database cannot be reached; retry shortly');
    }
    const status = fe.statusCode;
    if (status && status >= 400 && status < 500) {
      const code =
        (Object.keys(ERRORS) as ErrorCode[]).find((c) => ERRORS[c].status === status) ?? 'INVALID_REQUEST';
      return sendProblem(reply, code, err.message);
    }
    deps.log.error({ err, reqId: req.id }, 'unhandled error');
    return sendProblem(reply, 'INTERNAL', 'an unexpected error occurred; it has been logged');
  });

  await app.register(healthRoutes, deps);
  if (deps.routes === 'all') {
    await registerOpenApi(app);
    await app.register(messageRoutes, deps);
    await app.register(privacyRoutes, deps);
  }
  return app;
}

function sendProblem(reply: FastifyReply, code: ErrorCode, detail: string, errors?: Violation[]) {
  // `instance` is the route pattern, not the URL: a subject route's URL carries personal data (an IP).
  const body = problemBody(code, detail, errors, reply.request.routeOptions.url);
  return reply.code(body.status).type('application/problem+json').send(body);
}

function rejectionReason(err: unknown): string {
  if ((err as FastifyError).validation) return 'invalid';
  if (err instanceof QueueUnavailableError) return 'queue_unavailable';
  if (err instanceof ProblemError) {
    if (err.code === 'FORBIDDEN') return 'forbidden';
    if (err.code === 'QUEUE_UNAVAILABLE') return 'queue_unavailable';
    if (err.status === 400) return 'invalid';
  }
  return 'error';
}

function isDatabaseDown(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return (
    /^(08|57P)/.test(e.code ?? '') ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'].includes(e.code ?? '') ||
    /Connection terminated|timeout exceeded when trying to connect/.test(e.message ?? '')
  );
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Name of the authenticated API key (undefined when auth is off). */
    client?: string;
    /** Messages this request carries, once counted as received (ingest routes). */
    ingestCount?: number;
  }
}
