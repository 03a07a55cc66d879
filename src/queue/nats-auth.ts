import { readFileSync } from 'node:fs';
import { type ConnectionOptions, credsAuthenticator } from '@nats-io/transport-node';
import type { NatsConfig } from '../config.ts';

/** Connection options carrying the configured NATS credentials (none when the server is open). */
export function natsAuthOptions(auth: NatsConfig['auth']): Partial<ConnectionOptions> {
  if (auth.credsFile) return { authenticator: credsAuthenticator(readFileSync(auth.credsFile)) };
  if (auth.token) return { token: auth.token };
  if (auth.user) return { user: auth.user, pass: auth.pass ?? '' };
  return {};
}
