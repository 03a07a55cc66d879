import type { FastifyInstance } from 'fastify';
import { registerExpectContinue } from './expect-continue.ts';
import { guardLingeringSockets } from './lingering-close.ts';
import { enforceServerTimeouts, type TimeoutOptions } from './server-timeouts.ts';
import { registerUnreadBodies } from './unread-bodies.ts';

/**
 * Connection handling at the HTTP edge: every refusal reaches a client that is still uploading
 * (unread-bodies.ts, lingering-close.ts), `Expect: 100-continue` is refused before the body is sent
 * (expect-continue.ts), and slow clients get `408` when their timeout expires (server-timeouts.ts).
 * Call before the server listens.
 */
export function registerConnectionHandling(app: FastifyInstance, opts: TimeoutOptions): void {
  guardLingeringSockets(app);
  enforceServerTimeouts(app, opts);
  registerExpectContinue(app);
  registerUnreadBodies(app, opts);
}
