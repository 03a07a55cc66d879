import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  DeadLetterList,
  DeadLetter as DeadLetterView,
  Discarded,
  MessageIdParams as IdParams,
  Replayed,
  TimeParam,
} from '../../contract/api-schemas.ts';
import { isMessageId } from '../../contract/message-id.ts';
import { discardDeadLetters, type ReplayOptions, replayDeadLetters } from '../../ingest/replay.ts';
import { type DeadLetter, deadLetterView, getDeadLetter, listDeadLetters } from '../../store/dead-letters.ts';
import type { AppDeps } from '../app-deps.ts';
import { AUTH_PROBLEMS, jsonResponse, problemResponses, ref } from '../openapi.ts';
import { ProblemError } from '../problem.ts';
import { decodeCursor, encodeCursor, parseTime } from './cursor.ts';

/**
 * Dead letters as a feature (`admin` scope): list and read them, replay them onto the queue (one, or
 * every one matching a filter), discard them. Replays and discards are audited (ingest/replay.ts).
 */
const Filter = {
  sender: Type.Optional(Type.String({ minLength: 1, maxLength: 256, 'x-storable': true })),
  reason: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, 'x-storable': true, description: 'part of the reason' }),
  ),
  since: Type.Optional(TimeParam('failed at or after')),
  until: Type.Optional(TimeParam('failed before')),
};
const ListQuery = Type.Object(
  {
    ...Filter,
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);
const ReplayFilter = Type.Object(
  { ...Filter, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1000 })) },
  { additionalProperties: false, description: 'Replays the newest dead letters matching every field given' },
);
const problems = problemResponses(400, ...AUTH_PROBLEMS, 404, 503);

type FilterFields = Partial<Record<'sender' | 'reason' | 'since' | 'until', string>>;

export async function deadLetterRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const replayOpts: ReplayOptions = {
    db: deps.db,
    queue: deps.queue,
    metrics: deps.metrics,
    publishTimeoutMs: deps.ingest.publishTimeoutMs,
  };
  const actor = (req: FastifyRequest) => `api:${req.client ?? 'anonymous'}`;
  const filterOf = (q: FilterFields) => ({
    ...(q.sender === undefined ? {} : { sender: q.sender }),
    ...(q.reason === undefined ? {} : { reason: q.reason }),
    ...(q.since === undefined ? {} : { since: parseTime(q.since, 'since') }),
    ...(q.until === undefined ? {} : { until: parseTime(q.until, 'until') }),
  });
  const find = async (id: string): Promise<DeadLetter> => {
    const found = isMessageId(id) ? await getDeadLetter(deps.db, id.toLowerCase()) : undefined;
    if (!found)
      throw new ProblemError('NOT_FOUND', 'no dead letter has this id (replayed or discarded already?)');
    return found;
  };

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/v1/dead-letters',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'listDeadLetters',
        tags: ['dead-letters'],
        summary: 'List dead letters, newest first, cursor-paginated',
        description:
          'Messages the worker could not store, with the reason, filtered by sender, reason and time of ' +
          'failure; PII "redacted". A full page carries next_cursor.',
        querystring: ListQuery,
        response: { 200: jsonResponse('A page of dead letters', ref(DeadLetterList)), ...problems },
      },
    },
    async (req) => {
      const q = req.query;
      const limit = q.limit ?? 100;
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      const rows = await listDeadLetters(deps.db, {
        ...filterOf(q),
        limit,
        ...(after ? { after: { failedAt: after.at, id: after.id } } : {}),
      });
      const last = rows[rows.length - 1];
      return {
        items: rows.map(deadLetterView),
        next_cursor: rows.length === limit && last ? encodeCursor(last.failed_at, last.id) : null,
      };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/v1/dead-letters/:id',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'getDeadLetter',
        tags: ['dead-letters'],
        summary: 'One dead letter',
        description: 'The dead letter with this message id, PII "redacted".',
        params: IdParams,
        response: { 200: jsonResponse('The dead letter', ref(DeadLetterView)), ...problems },
      },
    },
    async (req) => deadLetterView(await find(req.params.id)),
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    '/v1/dead-letters/:id/replay',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'replayDeadLetter',
        tags: ['dead-letters'],
        summary: 'Put one dead letter back on the queue, under its original id (audited)',
        description:
          'Queues the message again under its original id, so it is stored at most once, and removes ' +
          'the dead letter. Written to the audit log.',
        params: IdParams,
        response: { 200: jsonResponse('Replayed', ref(Replayed)), ...problems },
      },
    },
    async (req) => ({
      replayed: await replayDeadLetters(replayOpts, [await find(req.params.id)], actor(req)),
    }),
  );

  app.post<{ Body: Static<typeof ReplayFilter> }>(
    '/v1/dead-letters/replay',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'replayDeadLetters',
        tags: ['dead-letters'],
        summary: 'Replay every dead letter matching a filter, at most `limit` (audited)',
        description:
          'Replays the newest dead letters matching every field given, each under its original id. ' +
          'Written to the audit log.',
        body: ReplayFilter,
        response: { 200: jsonResponse('Replayed', ref(Replayed)), ...problems },
      },
    },
    async (req) => {
      const rows = await listDeadLetters(deps.db, { ...filterOf(req.body), limit: req.body.limit ?? 1000 });
      return { replayed: await replayDeadLetters(replayOpts, rows, actor(req)) };
    },
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    '/v1/dead-letters/:id',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'discardDeadLetter',
        tags: ['dead-letters'],
        summary: 'Discard a dead letter for good (audited)',
        description: 'Deletes the dead letter; its message will never be stored. Written to the audit log.',
        params: IdParams,
        response: { 200: jsonResponse('Discarded', ref(Discarded)), ...problems },
      },
    },
    async (req) => {
      const d = await find(req.params.id);
      const [discarded] = await discardDeadLetters(replayOpts, [d.id], actor(req));
      if (!discarded)
        throw new ProblemError('NOT_FOUND', 'no dead letter has this id (replayed or discarded already?)');
      return { discarded };
    },
  );
}
