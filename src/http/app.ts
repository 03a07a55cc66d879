import { randomUUID } from 'node:crypto';
import type { Ajv } from 'ajv';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { registerAuth } from '../auth/authenticate.ts';
import { formatTraceparent, parseTraceContext } from '../contract/trace-context.ts';
import { createAjv } from '../contract/validator.ts';
import type { Metrics, RejectReason } from '../ops/metrics.ts';
import type { TraceSpan } from '../ops/tracing.ts';
import { separateAdminRoutes } from './admin-listener.ts';
import type { AppDeps } from './app-deps.ts';
import { answerClientError } from './client-error.ts';
import { limitConnections } from './connection-limit.ts';
import { registerConnectionHandling } from './connections.ts';
import { registerContentEncoding } from './content-encoding.ts';
import { registerJsonParser } from './content-type.ts';
import { type MappedProblem, mapError } from './error-map.ts';
import { ERRORS } from './error-registry.ts';
import { registerNdjsonParser } from './ndjson.ts';
import { documentSecurity, registerOpenApi } from './openapi.ts';
import { problemBody } from './problem.ts';
import { deadLetterRoutes } from './routes/dead-letters.ts';
import { healthRoutes } from './routes/health.ts';
import { messageRoutes } from './routes/messages.ts';
import { privacyRoutes } from './routes/privacy.ts';
import { checkingIntervalMs } from './server-timeouts.ts';

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
    // closeHttp (close-server.ts, the HTTP server's shutdown step) after a grace period, not at once: a
    // just-accepted socket whose request is still on the wire counts as idle to Node, and closing it
    // would reset a request the client already sent.
    return503OnClosing: false,
    forceCloseConnections: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
    // Bad percent-encoding and over-long parameters: answered like every other error (a problem that
    // never echoes the URL, which may hold an IP), not with Fastify's own body.
    clientErrorHandler: answerClientError,
    // Fastify's default joins every validation message into one string (90,000 of them for a hostile
    // body); the problem answer is built from err.validation instead (error-map.ts).
    schemaErrorFormatter: (errors, dataVar) => new Error(`${errors.length} violations in ${dataVar}`),
    frameworkErrors: (err, _req, reply) => {
      sendProblem(reply, mapError(err, { bodyLimit: deps.options.bodyLimit }));
    },
    ajv: { customOptions: {} },
  });
  limitConnections(app, deps.options, deps.metrics);
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
  registerNdjsonParser(app, deps.options.bodyLimit);
  registerContentEncoding(app, deps.options.bodyLimit);

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    // Once the listener is closed, each kept-alive connection is closed after its next response, so
    // clients reconnect to another replica. Not earlier: while the listener is still open, closing
    // connections makes balancers open new ones here, and connections still in the kernel's accept
    // queue when the listener closes are reset with their request.
    if (deps.lifecycle.closing) reply.header('connection', 'close');
    // Ingest and read routes take part in the caller's W3C trace (docs/tracing.md): a server span, a
    // child of a valid `traceparent` or the root of a new trace, named back to the caller on every
    // answer. Before authentication, so refusals carry it too.
    const scope = req.routeOptions.config?.scope;
    if (scope === 'ingest' || scope === 'read') {
      const parent = parseTraceContext(req.headers.traceparent, req.headers.tracestate);
      const route = req.routeOptions.url;
      const span = deps.tracing.startRequest(parent, `${req.method} ${route}`, {
        'http.request.method': req.method,
        'http.route': route,
      });
      req.traceSpan = span;
      reply.header('traceparent', formatTraceparent(span.context));
      if (span.context.traceState !== undefined) reply.header('tracestate', span.context.traceState);
    }
  });

  const accessLog = deps.options.accessLog ?? 'all';
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const seconds = reply.elapsedTime / 1000;
    deps.metrics.httpRequests.inc({ route, method: req.method, status: reply.statusCode });
    deps.metrics.httpDuration.observe({ route, method: req.method }, seconds);
    const span = req.traceSpan;
    if (span) {
      span.setAttributes({ 'http.response.status_code': reply.statusCode });
      span.end();
    }
    // One access-log line per request (INTAKE_ACCESS_LOG). The route pattern, never the raw URL:
    // paths such as /v1/subjects/ip/{ip} would otherwise write personal data to the log.
    if (accessLog === 'off' || (accessLog === 'errors' && reply.statusCode < 400)) return;
    deps.log.info(
      {
        reqId: req.id,
        trace_id: span?.context.traceId,
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

  if (deps.options.separateAdminRoutes) app.decorate('adminListener', separateAdminRoutes(app, deps.options));
  documentSecurity(app);
  registerAuth(app, deps.auth);

  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, { code: 'NOT_FOUND', detail: `no route for ${req.method} on this path` });
  });

  app.setErrorHandler((err: Error, req, reply) => {
    const p = mapError(err, {
      bodyLimit: deps.options.bodyLimit,
      ingestRoute: req.routeOptions.config?.scope === 'ingest',
    });
    if (req.routeOptions.config?.scope === 'ingest') countRefused(deps.metrics, req, ERRORS[p.code].reason);
    const trace_id = req.traceSpan?.context.traceId;
    if (p.log === 'error') deps.log.error({ err, reqId: req.id, trace_id }, 'unhandled error');
    else if (p.log === 'warn')
      deps.log.warn({ err, reqId: req.id, trace_id, code: p.code }, 'unexpected client error');
    // A server error fails the span (HTTP server span conventions: a 4xx is the client's, not an error).
    if (ERRORS[p.code].status >= 500) req.traceSpan?.fail(err);
    for (const [k, v] of Object.entries(p.headers ?? {})) reply.header(k, v);
    return sendProblem(reply, p);
  });

  // The document lists the routes added after it is registered: health and metrics too.
  if (deps.routes === 'all') await registerOpenApi(app);
  await app.register(healthRoutes, deps);
  if (deps.routes === 'all') {
    await app.register(messageRoutes, deps);
    await app.register(privacyRoutes, deps);
    await app.register(deadLetterRoutes, deps);
  }
  return app;
}

/**
 * Loss accounting (docs/alerting.md): every ingest request counts in received and ends as accepted,
 * duplicate or rejected, whatever refused it and wherever (auth and rate-limit hooks, content type and
 * encoding, body limit, JSON parsing, validation, the queue). A request refused before its body was
 * counted (401, 403, 413, 415, 429, INVALID_JSON) counts as one message, since nobody knows how many
 * it held; one refused after counts all of its messages not yet accounted for. Counted once.
 */
function countRefused(metrics: Metrics, req: FastifyRequest, reason: RejectReason): void {
  if (req.ingestCount === undefined) {
    req.ingestCount = 1;
    metrics.received.inc();
  }
  if (req.ingestCount > 0) metrics.rejected.inc({ reason }, req.ingestCount);
  req.ingestCount = 0;
}

function sendProblem(reply: FastifyReply, p: MappedProblem) {
  // `instance` is the route pattern, not the URL: a subject route's URL carries personal data (an IP).
  const body = problemBody(p.code, p.detail, p.errors, reply.request.routeOptions?.url);
  if (p.errorsTotal !== undefined && p.errors && p.errorsTotal > p.errors.length)
    body.errors_total = p.errorsTotal;
  if (p.ids?.length) body.ids = p.ids;
  return reply.code(body.status).type('application/problem+json').send(body);
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Name of the authenticated API key (undefined when auth is off). */
    client?: string;
    /**
     * Ingest routes: messages of this request counted as received and not yet as accepted, duplicate
     * or rejected (undefined until counted; 0 once all are accounted for).
     */
    ingestCount?: number;
    /** The server span of an ingest or read request (ended when the response is finished). */
    traceSpan?: TraceSpan;
  }
}
