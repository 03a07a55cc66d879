import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { assertSenderAllowed, readableSenders, senderAllowed } from '../../auth/authenticate.ts';
import {
  Accepted,
  BatchAccepted,
  BatchResults,
  MessageIdParams,
  MessageList,
  MessageStatus,
  StoredMessage,
} from '../../contract/api-schemas.ts';
import { isMessageId, uuidv7Time } from '../../contract/message-id.ts';
import { IncomingBatch, IncomingMessage, MAX_BATCH } from '../../contract/message-schema.ts';
import { compileValidator, createAjv, toViolations, type Violation } from '../../contract/validator.ts';
import type { IngestContext } from '../../ingest/ingest.ts';
import type { RejectReason } from '../../ops/metrics.ts';
import { lookUpStatus, type StatusRow } from '../../store/message-status.ts';
import { getMessage, queryMessages } from '../../store/messages.ts';
import type { AppDeps } from '../app-deps.ts';
import { MAX_NDJSON_LINES, NdjsonBody } from '../ndjson.ts';
import {
  AUTH_PROBLEMS,
  jsonResponse,
  problemResponses,
  rateLimitHeaders,
  ref,
  traceHeaders,
} from '../openapi.ts';
import { ProblemError } from '../problem.ts';
import { decodeCursor, encodeCursor, MessageListQuery, parseTime } from './cursor.ts';

/** What an ingest route can refuse with, besides auth (docs/errors.md). */
const INGEST_PROBLEMS = problemResponses(400, ...AUTH_PROBLEMS, 409, 413, 415, 422, 503);

/** Ingest (POST) and read (GET) of messages: docs/contract.md §2. */
export async function messageRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { metrics, ingest } = deps;

  app.post<{ Body: IncomingMessage }>(
    '/v1/messages',
    {
      config: { scope: 'ingest', rateCost: 'messages' },
      schema: {
        operationId: 'ingestMessage',
        tags: ['ingest'],
        summary: 'Ingest one message',
        description:
          'Validates the message against the contract (all violations listed in the 400) and answers 202 ' +
          'once it is durably queued; the worker then stores it once. A retry with the same ' +
          'Idempotency-Key returns the same id.',
        body: ref(IncomingMessage),
        headers: idempotencyHeader,
        response: {
          202: jsonResponse('Accepted: durably queued, will be stored once', ref(Accepted), {
            location: { type: 'string', description: 'Where the stored record will be readable' },
            ...rateLimitHeaders,
            ...traceHeaders,
          }),
          ...INGEST_PROBLEMS,
        },
      },
      preValidation: async (req) => {
        req.ingestCount = 1;
        metrics.received.inc();
      },
    },
    async (req, reply) => {
      assertSenderAllowed(req, req.body.sender);
      await req.chargeMessages?.(1);
      const [result] = await ingest.accept([req.body], ingestContext(req, false));
      req.ingestCount = 0; // accounted for, by accept()
      reply.code(202).header('location', `/v1/messages/${result!.id}`);
      return { id: result!.id, status: 'accepted' as const };
    },
  );

  app.post<{ Body: { messages: IncomingMessage[] } | NdjsonBody; Querystring: { mode?: 'all' | 'partial' } }>(
    '/v1/messages/batch',
    {
      config: { scope: 'ingest', rateCost: 'messages' },
      // Item violations are read by the handler: in partial mode they reject only their item.
      attachValidation: true,
      schema: {
        summary: 'Ingest many messages: all or nothing, or per item',
        description:
          'JSON (`{"messages":[…]}`, at most 1000): by default all or nothing: if any item is invalid ' +
          'nothing is queued and the 400 lists the violations (the first 100, and errors_total) with ' +
          'pointers such as /messages/3/ts; otherwise 202 with one id per item, in order. With ' +
          '`?mode=partial` the valid items are queued and the 207 has one result per item. NDJSON ' +
          `(\`application/x-ndjson\`, one message per line, at most ${MAX_NDJSON_LINES} lines) always ` +
          'answers per item (207): a bad line never costs the good ones. An Idempotency-Key names the ' +
          'request as a whole; item i is remembered as <key>/i.',
        operationId: 'ingestBatch',
        tags: ['ingest'],
        querystring: BatchQuery,
        body: {
          content: {
            'application/json': { schema: ref(IncomingBatch) },
            'application/x-ndjson': {
              schema: { type: 'string', description: 'One message (a JSON object) per line' },
            },
          },
        },
        headers: idempotencyHeader,
        response: {
          202: jsonResponse('All accepted (JSON, default mode)', ref(BatchAccepted), {
            ...rateLimitHeaders,
            ...traceHeaders,
          }),
          207: jsonResponse('One result per item (?mode=partial, NDJSON)', ref(BatchResults), {
            ...rateLimitHeaders,
            ...traceHeaders,
          }),
          ...INGEST_PROBLEMS,
        },
      },
      preValidation: async (req) => {
        const body = req.body as { messages?: unknown } | NdjsonBody | null;
        const items = body instanceof NdjsonBody ? body.lines : body?.messages;
        req.ingestCount = Array.isArray(items) && items.length > 0 ? items.length : 1;
        metrics.received.inc(req.ingestCount);
        // Refused before any item is validated: validating 340,000 `{}` would cost seconds of CPU.
        if (Array.isArray(items) && !(body instanceof NdjsonBody) && items.length > MAX_BATCH) {
          throw new ProblemError('INVALID_MESSAGE', 'the batch is too long', {
            errors: [
              { pointer: '/messages', detail: `must have at most ${MAX_BATCH} items (got ${items.length})` },
            ],
          });
        }
      },
    },
    async (req, reply) => {
      const failed = req.validationError as
        | (Error & { validationContext?: string; validation?: unknown })
        | undefined;
      if (failed && failed.validationContext !== 'body') throw failed;
      const ctx = ingestContext(req, true);
      if (!(req.body instanceof NdjsonBody) && req.query.mode !== 'partial') {
        if (failed) throw failed;
        const { messages } = req.body;
        for (const m of messages) assertSenderAllowed(req, m.sender);
        await req.chargeMessages?.(messages.length);
        const results = await ingest.accept(messages, ctx);
        req.ingestCount = 0;
        reply.code(202);
        return {
          items: results.map((r) => ({ id: r.id, status: 'accepted' as const })),
          status: 'accepted' as const,
        };
      }
      // A body that is not an object at all (`null`, `1`, `[]`) failed validation at its root, which
      // checkItems answers with a 400: it must not be dereferenced first.
      const body = req.body as { messages?: unknown[] } | null;
      const items =
        body instanceof NdjsonBody ? checkLines(body) : checkItems(body?.messages ?? [], failed?.validation);
      for (const item of items) {
        const sender = item.body?.sender;
        if (sender !== undefined && !senderAllowed(req, sender)) {
          item.body = undefined;
          item.errors = [
            { pointer: '/sender', detail: `this API key may not send as ${JSON.stringify(sender)}` },
          ];
          item.reason = 'forbidden';
        }
      }
      await req.chargeMessages?.(items.length);
      const good = items.flatMap((item, i) => (item.body ? [{ body: item.body, i }] : []));
      const rejected = items.length - good.length;
      for (const item of items) if (!item.body) metrics.rejected.inc({ reason: item.reason ?? 'invalid' });
      req.ingestCount = good.length; // from here on, an error concerns only the valid items
      const results = good.length
        ? await ingest.accept(
            good.map((g) => g.body),
            { ...ctx, indexes: good.map((g) => g.i) },
          )
        : [];
      req.ingestCount = 0;
      const ids = new Map(good.map((g, k) => [g.i, results[k]!.id]));
      reply.code(207);
      return {
        items: items.map((item, i) =>
          item.body
            ? { status: 'accepted' as const, id: ids.get(i)! }
            : { status: 'rejected' as const, errors: item.errors ?? [] },
        ),
        accepted: good.length,
        rejected,
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/messages/:id',
    {
      config: { scope: 'read' },
      schema: {
        operationId: 'getMessage',
        tags: ['messages'],
        summary: 'Read one stored message',
        description:
          'The stored record, its IP "redacted". 404 until the worker has stored it, a moment after the 202.',
        params: MessageIdParams,
        response: {
          200: jsonResponse('The stored record', ref(StoredMessage), traceHeaders),
          ...problemResponses(400, ...AUTH_PROBLEMS, 404, 503),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      if (!isMessageId(id)) throw new ProblemError('NOT_FOUND', 'no message has this id (ids are UUIDv7)');
      const found = await getMessage(deps.db, id.toLowerCase());
      // Another sender's message is as absent as one never stored, so ids cannot be probed.
      if (!found || !senderAllowed(req, found.sender))
        throw new ProblemError(
          'NOT_FOUND',
          'no message with this id is stored (yet: storing takes a moment)',
        );
      return found;
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/messages/:id/status',
    {
      config: { scope: 'read' },
      schema: {
        operationId: 'getMessageStatus',
        tags: ['messages'],
        summary: 'What became of an accepted message',
        description:
          '`stored` (with stored_at), `queued` (on the Postgres queue, not stored yet), `dead_lettered` ' +
          '(with the reason), `erased` (with erased_at) or `unknown`. Never a guess: on the JetStream ' +
          'queue a message not stored yet is `unknown` (the stream cannot be asked cheaply). ' +
          "Another sender's message is `unknown`, exactly as an id never accepted. If the database " +
          'cannot be asked or does not answer within 5 s: `unknown` with reason `database_unavailable`, ' +
          'not an error.',
        params: MessageIdParams,
        response: {
          200: jsonResponse('Where the message is', ref(MessageStatus)),
          ...problemResponses(400, ...AUTH_PROBLEMS),
        },
      },
    },
    async (req): Promise<MessageStatus> => {
      const id = req.params.id.toLowerCase();
      // A UUID of another version was never issued by intake.
      if (!isMessageId(id)) return { id, status: 'unknown' };
      let found: StatusRow | undefined;
      try {
        found = await lookUpStatus(deps.db, id);
      } catch (err) {
        req.log.warn({ err, id }, 'message status: the database could not be asked');
        return { id, status: 'unknown', reason: 'database_unavailable' };
      }
      // Another sender's message is as unknown as one never accepted, so ids cannot be probed.
      if (!found || !senderAllowed(req, found.sender)) return { id, status: 'unknown' };
      const receivedAt = uuidv7Time(id).toISOString();
      switch (found.kind) {
        case 'stored':
          return {
            id,
            status: 'stored',
            stored_at: found.storedAt?.toISOString() ?? null,
            received_at: receivedAt,
            trace_id: found.traceId,
          };
        case 'queued':
          return {
            id,
            status: 'queued',
            received_at: receivedAt,
            attempts: found.attempts,
            trace_id: found.traceId,
          };
        case 'dead_lettered':
          return {
            id,
            status: 'dead_lettered',
            received_at: receivedAt,
            failed_at: found.failedAt.toISOString(),
            attempts: found.attempts,
            reason: found.reason,
            trace_id: found.traceId,
          };
        case 'erased':
          return { id, status: 'erased', erased_at: found.erasedAt.toISOString() };
      }
    },
  );

  app.get<{ Querystring: MessageListQuery }>(
    '/v1/messages',
    {
      config: { scope: 'read' },
      schema: {
        operationId: 'listMessages',
        tags: ['messages'],
        summary: 'Query stored messages, newest first, cursor-paginated',
        description:
          'Stored records by sender and time received, newest first, IPs "redacted". A full page carries ' +
          'next_cursor: pass it as cursor for the next one. ' +
          "A key bound to senders reads only theirs: without `sender` the list holds only the key's " +
          'senders; `sender` naming another one is 403.',
        querystring: MessageListQuery,
        response: {
          200: jsonResponse('A page of stored records', ref(MessageList), traceHeaders),
          ...problemResponses(400, ...AUTH_PROBLEMS, 503),
        },
      },
    },
    async (req) => {
      const q = req.query;
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      const limit = q.limit ?? 100;
      const senders = readableSenders(req, q.sender);
      const items = await queryMessages(deps.db, {
        limit,
        ...(senders === undefined ? {} : { senders }),
        ...(q.since === undefined ? {} : { since: parseTime(q.since, 'since') }),
        ...(q.until === undefined ? {} : { until: parseTime(q.until, 'until') }),
        ...(after ? { after: { receivedAt: new Date(after.at), id: after.id } } : {}),
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
    // Not constrained here: an invalid value is ignored (a new trace), never refused.
    traceparent: {
      type: 'string',
      description:
        "W3C Trace Context: the caller's span. A valid one makes intake's spans its children and its trace " +
        'id the stored trace_id; an invalid one is ignored and a new trace started.',
    },
    tracestate: {
      type: 'string',
      description: 'W3C Trace Context vendor list, kept with a valid traceparent',
    },
  },
};

const BatchQuery = Type.Object(
  {
    mode: Type.Optional(
      Type.Union([Type.Literal('all'), Type.Literal('partial')], {
        description: '`all` (default): one invalid item refuses the batch; `partial`: per-item results (207)',
      }),
    ),
  },
  { additionalProperties: false },
);

/** At most this many violations are listed per rejected item. */
const MAX_ITEM_VIOLATIONS = 20;

/** One item of a per-item request; a refused one says why, for loss accounting (default `invalid`). */
type CheckedItem = { body?: IncomingMessage; errors?: Violation[]; reason?: RejectReason };

const validateItem = compileValidator(createAjv(), IncomingMessage);

/** NDJSON lines, each validated on its own. */
function checkLines(body: NdjsonBody): CheckedItem[] {
  return body.lines.map((l) => {
    if ('error' in l) {
      // A line that is not JSON: invalid_json; a number no double holds (pointer given) breaks the contract.
      const reason = l.pointer === undefined ? 'invalid_json' : 'invalid';
      return { errors: [{ pointer: l.pointer ?? '', detail: l.error }], reason };
    }
    const errors = validateItem(l.value);
    return errors.length
      ? { errors: errors.slice(0, MAX_ITEM_VIOLATIONS) }
      : { body: l.value as IncomingMessage };
  });
}

/**
 * The items of a JSON batch in partial mode, from the one validation of the whole body: its violations
 * are grouped by item; one outside any item (the envelope) refuses the request as a whole.
 */
function checkItems(messages: unknown[], validation: unknown): CheckedItem[] {
  const byItem = new Map<number, Violation[]>();
  for (const v of toViolations(validation as never)) {
    const m = /^\/messages\/(\d+)(\/.*)?$/.exec(v.pointer);
    if (!m) {
      throw new ProblemError('INVALID_MESSAGE', 'the batch itself is not valid', { errors: [v] });
    }
    const list = byItem.get(Number(m[1])) ?? [];
    if (list.length < MAX_ITEM_VIOLATIONS) list.push({ pointer: m[2] ?? '', detail: v.detail });
    byItem.set(Number(m[1]), list);
  }
  return messages.map((m, i) => {
    const errors = byItem.get(i);
    return errors ? { errors } : { body: m as IncomingMessage };
  });
}

/** Who is sending, and the Idempotency-Key that scopes a retry. */
function ingestContext(req: FastifyRequest, batch: boolean): IngestContext {
  const key = req.headers['idempotency-key'];
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 255)) {
    throw new ProblemError('INVALID_REQUEST', 'Idempotency-Key must be 1 to 255 characters');
  }
  return { client: req.client, idempotencyKey: key, batch, trace: req.traceSpan?.context };
}
