import { readFileSync } from 'node:fs';
import { type ConnectionOptions, credsAuthenticator } from '@nats-io/transport-node';
import type { NatsConfig } from '../../config.ts';

/** Connection options carrying the configured NATS credentials (none when the server is open). */
export function natsAuthOptions(auth: NatsConfig['auth']): Partial<ConnectionOptions> {
  if (auth.credsFile) return { authenticator: credsAuthenticator(readFileSync(auth.credsFile)) };
  if (auth.token) return { token: auth.token };
  if (auth.user) return { user: auth.user, pass: auth.pass ?? '' };
  return {};
}

/**
 * Everything about who intake is to NATS and whom it trusts, for every connection it opens: the
 * credentials, the inbox prefix its user may subscribe to, and TLS. With `tls` set the client insists
 * on TLS (a server offering none is refused: no downgrade) and verifies the server's certificate chain
 * and host name against NATS_TLS_CA_FILE; the transport reads the files at each connect, so a renewed
 * client certificate is picked up on reconnect.
 */
export function natsConnectOptions(nats: NatsConfig): Partial<ConnectionOptions> {
  const { tls } = nats;
  return {
    ...natsAuthOptions(nats.auth),
    inboxPrefix: nats.inboxPrefix,
    ...(tls
      ? {
          tls: {
            ...(tls.caFile ? { caFile: tls.caFile } : {}),
            ...(tls.certFile ? { certFile: tls.certFile } : {}),
            ...(tls.keyFile ? { keyFile: tls.keyFile } : {}),
          },
        }
      : {}),
  };
}
