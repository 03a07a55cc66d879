import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isMessageId } from '../../contract/message-id.ts';
import {
  Accepted,
  BatchAccepted,
  IncomingBatch,
  IncomingMessage,
  MAX_BATCH,
  Problem,
  StoredMessage,
} from '../../contract/message-schema.ts';
import type { IngestContext } from '../../ingest/ingest.ts';
import { getMessage, queryMessages } from '../../store/messages.ts';
import type { AppDeps } from '../app.ts';
import { assertSenderAllowed } from '../auth.ts';
import { ProblemError } from '../problem.ts';
import { decodeCursor, encodeCursor, MessageListQuery, parseTime } from './cursor.ts';

const problems = {
  400: Problem,
  401: Problem,
  403: Problem,
  409: Problem,
  413: Problem,
  415: Problem,
  422: Problem,
  429: Problem,
  503: Problem,
};

/** Ingest (POST) and read (GET) of messages: SPEC §2. */
export async function messageRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { metrics, ingest } = deps;

  app.post<{ Body: IncomingMessage }>(
    '/v1/messages',
    {
      config: { scope: 'ingest', rateCost: 'messages' },
      schema: {
        summary: 'Ingest one message',
        body: IncomingMessage,
        headers: idempotencyHeader,
        response: { 202: Accepted, ...problems },
      },
      preValidation: async (req) => {
        req.ingestCount = 1;
        metrics.received.inc();
      },
    },
    async (req, reply) => {
      assertSenderAllowed(req, req.body.sender);
      req.chargeMessages?.(1);
      const [result] = await ingest.accept([req.body], ingestContext(req, false));
      reply.code(202).header('location', `/v1/messages/${result!.id}`);
      return { id: result!.id, status: 'accepted' as const };
    },
  );

  app.post<{ Body: { messages: IncomingMessage[] } }>(
    '/v1/messages/batch',
    {
      config: { scope: 'ingest', rateCost: 'messages' },
      schema: {
        summary: 'Ingest up to 1000 messages at once (all or nothing)',
        description:
          'Every item is validated first. If any is invalid, nothing is queued and the 400 lists the ' +
          'violations (the first 100, and errors_total) with pointers such as /messages/3/ts. Otherwise ' +
          'all are queued and the 202 lists one id per item, in order. An Idempotency-Key applies to the ' +
          'batch as a whole.',
        body: IncomingBatch,
        headers: idempotencyHeader,
        response: { 202: BatchAccepted, ...problems },
      },
      preValidation: async (req) => {
        const items = (req.body as { messages?: unknown } | null)?.messages;
        req.ingestCount = Array.isArray(items) && items.length > 0 ? items.length : 1;
        metrics.received.inc(req.ingestCount);
        // Refused before any item is validated: a 1 MiB body holds ~340,000 `{}`, and validating each
        // would cost seconds of CPU and a problem body of tens of megabytes.
        if (Array.isArray(items) && items.length > MAX_BATCH) {
          throw new ProblemError('INVALID_MESSAGE', 'the batch is too long', {
            errors: [
              { pointer: '/messages', detail: `must have at most ${MAX_BATCH} items (got ${items.length})` },
            ],
          });
        }
      },
    },
    async (req, reply) => {
      for (const m of req.body.messages) assertSenderAllowed(req, m.sender);
      req.chargeMessages?.(req.body.messages.length);
      const results = await ingest.accept(req.body.messages, ingestContext(req, true));
      reply.code(202);
      return {
        items: results.map((r) => ({ id: r.id, status: 'accepted' as const })),
        status: 'accepted' as const,
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/messages/:id',
    {
      config: { scope: 'read' },
      schema: { summary: 'Read one stored message', response: { 200: StoredMessage, 404: Problem } },
    },
    async (req) => {
      const { id } = req.params;
      if (!isMessageId(id)) throw new ProblemError('NOT_FOUND', 'no message has this id (ids are UUIDv7)');
      const found = await getMessage(deps.db, id.toLowerCase());
      if (!found)
        throw new ProblemError(
          'NOT_FOUND',
          'no message with this id is stored (yet: storing takes a moment)',
        );
      return found;
    },
  );

  app.get<{ Querystring: MessageListQuery }>(
    '/v1/messages',
    {
      config: { scope: 'read' },
      schema: {
        summary: 'Query stored messages, newest first, cursor-paginated',
        querystring: MessageListQuery,
      },
    },
    async (req) => {
      const q = req.query;
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      const limit = q.limit ?? 100;
      const items = await queryMessages(deps.db, {
        limit,
        ...(q.sender === undefined ? {} : { sender: q.sender }),
        ...(q.since === undefined ? {} : { since: parseTime(q.since, 'since') }),
        ...(q.until === undefined ? {} : { until: parseTime(q.until, 'until') }),
        ...(after ? { after } : {}),
      });
      const last = items[items.length - 1];
      return {
        items,
        next_cursor: items.length === limit && last ? encodeCursor(last.received_at, last.id) : null,
      };
    },
  );
}

const idempotencyHeader = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      description:
        'A retry with the same key and the same body from the same client returns the same id and is ' +
        'stored once; the same key with a different body is refused with 422.',
    },
  },
};

/** Who is sending, and the Idempotency-Key that scopes a retry. */
function ingestContext(req: FastifyRequest, batch: boolean): IngestContext {
  const key = req.headers['idempotency-key'];
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 255)) {
    throw new ProblemError('INVALID_REQUEST', 'Idempotency-Key must be 1 to 255 characters');
  }
  return { client: req.client, idempotencyKey: key, batch };
}
