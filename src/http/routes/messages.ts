import type { FastifyInstance, FastifyRequest } from 'fastify';
import { newMessageId } from '../../contract/message-id.ts';
import {
  Accepted,
  BatchAccepted,
  IncomingBatch,
  IncomingMessage,
  Problem,
  StoredMessage,
} from '../../contract/message-schema.ts';
import { protectFields } from '../../privacy/message-fields.ts';
import type { PublishRequest, QueuedMessage } from '../../queue/queue.ts';
import { QueueUnavailableError } from '../../queue/queue.ts';
import { getMessage, queryMessages, uuidv7Time } from '../../store/messages.ts';
import type { AppDeps } from '../app.ts';
import { assertSenderAllowed } from '../auth.ts';
import { ProblemError } from '../problem.ts';
import { decodeCursor, encodeCursor, MessageListQuery } from './cursor.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const problems = {
  400: Problem,
  401: Problem,
  403: Problem,
  413: Problem,
  415: Problem,
  429: Problem,
  503: Problem,
};

/** Ingest (POST) and read (GET) of messages: SPEC §2. */
export async function messageRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { metrics } = deps;

  /** Validated body → the queued form: id assigned, IP replaced by pseudonym + ciphertext. */
  const toQueued = (body: IncomingMessage): QueuedMessage => {
    const id = newMessageId();
    const ip = body['sent-from-ip'];
    const m: QueuedMessage = {
      v: 1,
      id,
      // From the id itself, so that id and partition key can never disagree.
      received_at: uuidv7Time(id).toISOString(),
      ts: Number(body.ts),
      sender: body.sender,
      message: protectFields(deps.ipProtector, deps.piiFields, body.message),
      priority: body.priority ?? null,
    };
    if (ip !== undefined) m.ip = deps.ipProtector.protect(ip);
    return m;
  };

  const publish = async (reqs: PublishRequest[]) => {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new QueueUnavailableError(`queue did not acknowledge within ${deps.options.publishTimeoutMs} ms`),
          ),
        deps.options.publishTimeoutMs,
      );
    });
    try {
      const results = await Promise.race([deps.queue.publish(reqs), timeout]);
      metrics.publishSeconds.observe((performance.now() - started) / 1000);
      return results;
    } finally {
      clearTimeout(timer);
    }
  };

  app.post<{ Body: IncomingMessage }>(
    '/v1/messages',
    {
      config: { scope: 'ingest' },
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
      const message = toQueued(req.body);
      const key = idempotencyKey(req);
      const [result] = await publish([key === undefined ? { message } : { message, idempotencyKey: key }]);
      if (result!.duplicate) metrics.duplicates.inc();
      else metrics.accepted.inc();
      reply.code(202).header('location', `/v1/messages/${result!.id}`);
      return { id: result!.id, status: 'accepted' as const };
    },
  );

  app.post<{ Body: { messages: IncomingMessage[] } }>(
    '/v1/messages/batch',
    {
      config: { scope: 'ingest' },
      schema: {
        summary: 'Ingest up to 1000 messages at once (all or nothing)',
        description:
          'Every item is validated first. If any is invalid, nothing is queued and the 400 lists every ' +
          'violation with pointers such as /messages/3/ts. Otherwise all are queued and the 202 lists one ' +
          'id per item, in order. An Idempotency-Key applies to the batch as a whole.',
        body: IncomingBatch,
        headers: idempotencyHeader,
        response: { 202: BatchAccepted, ...problems },
      },
      preValidation: async (req) => {
        const items = (req.body as { messages?: unknown })?.messages;
        req.ingestCount = Array.isArray(items) && items.length > 0 ? items.length : 1;
        metrics.received.inc(req.ingestCount);
      },
    },
    async (req, reply) => {
      for (const m of req.body.messages) assertSenderAllowed(req, m.sender);
      const key = idempotencyKey(req);
      const reqs: PublishRequest[] = req.body.messages.map((b, i) => {
        const message = toQueued(b);
        return key === undefined ? { message } : { message, idempotencyKey: `${key}\n${i}` };
      });
      const results = await publish(reqs);
      for (const r of results) (r.duplicate ? metrics.duplicates : metrics.accepted).inc();
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
      if (!UUID.test(id)) throw new ProblemError('NOT_FOUND', 'no message has this id (ids are UUIDv7)');
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
      description: 'A retry with the same key from the same client returns the same id and is stored once.',
    },
  },
};

/** The Idempotency-Key scoped to the client that sent it. */
function idempotencyKey(req: FastifyRequest): string | undefined {
  const key = req.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || key.length === 0 || key.length > 255) {
    throw new ProblemError('INVALID_REQUEST', 'Idempotency-Key must be 1 to 255 characters');
  }
  return `${req.client ?? 'anonymous'}\n${key}`;
}

function parseTime(v: string, name: string): Date {
  const d = /^\d+$/.test(v) ? new Date(Number(v) * 1000) : new Date(v);
  if (Number.isNaN(d.getTime())) {
    throw new ProblemError('INVALID_REQUEST', `${name} must be RFC 3339 or Unix seconds`, {
      errors: [{ pointer: `/${name}`, detail: 'must be RFC 3339 or Unix seconds' }],
    });
  }
  return d;
}
