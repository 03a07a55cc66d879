import type { FastifyInstance } from 'fastify';
import { IPV4 } from '../../contract/keywords.ts';
import { isMessageId } from '../../contract/message-id.ts';
import { Problem, StoredMessage } from '../../contract/message-schema.ts';
import { eraseSubject, exportSubject, revealMessage } from '../../privacy/subjects.ts';
import type { AppDeps } from '../app.ts';
import { ProblemError } from '../problem.ts';

/** GDPR endpoints (SPEC §2, §5): export, erasure and reveal, all under the `privacy` scope, all audited. */
export async function privacyRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const ip = (v: string) => {
    if (!IPV4.test(v))
      throw new ProblemError('INVALID_REQUEST', 'the subject must be a dotted-decimal IPv4 address');
    return v;
  };
  const actor = (client: string | undefined) => `api:${client ?? 'anonymous'}`;

  app.get<{ Params: { ip: string } }>(
    '/v1/subjects/ip/:ip/messages',
    {
      config: { scope: 'privacy' },
      schema: { summary: 'GDPR export: everything held about an IP (audited)' },
    },
    async (req) => exportSubject(deps.db, deps.queue, deps.ipProtector, ip(req.params.ip), actor(req.client)),
  );

  app.delete<{ Params: { ip: string } }>(
    '/v1/subjects/ip/:ip',
    {
      config: { scope: 'privacy' },
      schema: { summary: 'GDPR erasure of an IP: deletes its rows, tombstones it (audited)' },
    },
    async (req) => ({
      erased: await eraseSubject(deps.db, deps.queue, deps.ipProtector, ip(req.params.ip), actor(req.client)),
    }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/messages/:id/revealed',
    {
      config: { scope: 'privacy' },
      schema: {
        summary: 'One message with its IP and PII fields in clear (audited)',
        response: { 200: StoredMessage, 404: Problem },
      },
    },
    async (req) => {
      const m = isMessageId(req.params.id)
        ? await revealMessage(deps.db, deps.ipProtector, req.params.id.toLowerCase(), actor(req.client))
        : undefined;
      if (!m) throw new ProblemError('NOT_FOUND', 'no message with this id is stored');
      return m;
    },
  );
}
