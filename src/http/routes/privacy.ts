import type { FastifyInstance } from 'fastify';
import {
  Erasure,
  MessageIdParams,
  StoredMessage,
  SubjectExport,
  SubjectIpParams,
} from '../../contract/api-schemas.ts';
import { IPV4 } from '../../contract/keywords.ts';
import { isMessageId } from '../../contract/message-id.ts';
import { eraseSubject, exportSubject, revealMessage } from '../../privacy/subjects.ts';
import type { AppDeps } from '../app-deps.ts';
import { AUTH_PROBLEMS, jsonResponse, problemResponses, ref } from '../openapi.ts';
import { ProblemError } from '../problem.ts';

/** GDPR endpoints (docs/contract.md §2, §5): export, erasure and reveal, all under the `privacy` scope, all audited. */
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
      schema: {
        operationId: 'exportSubject',
        tags: ['privacy'],
        summary: 'GDPR export: everything held about an IP (audited)',
        description:
          'The stored messages of the subject with IP and PII fields in clear, and how many of its ' +
          'messages are dead-lettered or still queued. Written to the audit log.',
        params: SubjectIpParams,
        response: {
          200: jsonResponse('Everything held about the subject', ref(SubjectExport)),
          ...problemResponses(400, ...AUTH_PROBLEMS, 503),
        },
      },
    },
    async (req) => exportSubject(deps.db, deps.queue, deps.ipProtector, ip(req.params.ip), actor(req.client)),
  );

  app.delete<{ Params: { ip: string } }>(
    '/v1/subjects/ip/:ip',
    {
      config: { scope: 'privacy' },
      schema: {
        operationId: 'eraseSubject',
        tags: ['privacy'],
        summary: 'GDPR erasure of an IP: deletes its rows, tombstones it (audited)',
        description:
          'Deletes the stored messages and dead letters of the subject and tombstones it, so messages ' +
          'of it still queued are never stored. Written to the audit log.',
        params: SubjectIpParams,
        response: {
          200: jsonResponse('What was erased', ref(Erasure)),
          ...problemResponses(400, ...AUTH_PROBLEMS, 503),
        },
      },
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
        operationId: 'revealMessage',
        tags: ['privacy'],
        summary: 'One message with its IP and PII fields in clear (audited)',
        description: 'The stored record with its IP and PII fields decrypted. Written to the audit log.',
        params: MessageIdParams,
        response: {
          200: jsonResponse('The stored record, revealed', ref(StoredMessage)),
          ...problemResponses(400, ...AUTH_PROBLEMS, 404, 503),
        },
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
