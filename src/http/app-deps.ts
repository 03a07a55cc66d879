import type { AuthOptions } from '../auth/authenticate.ts';
import type { AccessLog } from '../config.ts';
import type { Ingest } from '../ingest/ingest.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Tracing } from '../ops/tracing.ts';
import type { IpProtector } from '../privacy/ip-protector.ts';
import type { QueueProducer } from '../queue/queue.ts';
import type { Pool } from '../store/pool.ts';

/** What the HTTP edge needs from the rest of intake. Built by runtime.ts; tests build their own. */
export interface AppDeps {
  queue: QueueProducer;
  /** The write path of the ingest routes (id, PII protection, publish under the deadline). */
  ingest: Ingest;
  /** Read side (GET routes). */
  db: Pool;
  metrics: Metrics;
  log: Logger;
  /** Starts each ingest and read request's server span (ops/tracing.ts; idOnlyTracing when not exporting). */
  tracing: Tracing;
  ipProtector: IpProtector;
  /** Readiness of the parts behind the API (queue reachable, not draining). */
  lifecycle: Lifecycle;
  auth: AuthOptions;
  /** `all` for the API; `ops` (health, metrics) for a worker-only process. */
  routes: 'all' | 'ops';
  options: {
    bodyLimit: number;
    requestTimeoutMs: number;
    headersTimeoutMs: number;
    lingeringTimeMs: number;
    lingeringTimeoutMs: number;
    /** INTAKE_MAX_CONNECTIONS: connections held open at most; past it, new ones get 503 and are closed. */
    maxConnections: number;
    /** INTAKE_ACCESS_LOG: which requests get an access-log line (default all). */
    accessLog?: AccessLog;
    /**
     * INTAKE_ADMIN_PORT is set: the privacy and admin routes go to `app.adminListener` only
     * (admin-listener.ts); the caller makes it listen.
     */
    separateAdminRoutes?: boolean;
  };
}

/** Shared shutdown state, read by /readyz and every response. */
export class Lifecycle {
  /** Set when SIGTERM arrives: /readyz answers 503 so load balancers stop sending new work. */
  draining = false;
  /** Set when the listener closes: each response then carries `Connection: close`. */
  closing = false;
}
