import { type Static, Type } from '@sinclair/typebox';

/**
 * The answers of the HTTP API, as JSON Schemas with an `$id` each: responses are serialised with them
 * and the OpenAPI document lists them under components/schemas (http/openapi.ts). The incoming message
 * is in message-schema.ts. Compound schemas refer to named ones by `Type.Ref`, so each is defined once.
 */

const Violation = Type.Object({ pointer: Type.String(), detail: Type.String() });

export const Accepted = Type.Object(
  { id: Type.String({ format: 'uuid' }), status: Type.Literal('accepted') },
  { $id: 'Accepted', description: 'The message is durably queued and will be stored once' },
);

export const BatchAccepted = Type.Object(
  { items: Type.Array(Type.Ref(Accepted)), status: Type.Literal('accepted') },
  { $id: 'BatchAccepted', description: 'Every item queued; one id per item, in order' },
);

/** One entry of a per-item batch answer (`?mode=partial`, NDJSON): accepted with its id, or why not. */
export const ItemResult = Type.Union(
  [
    Type.Object({ status: Type.Literal('accepted'), id: Type.String({ format: 'uuid' }) }),
    Type.Object({
      status: Type.Literal('rejected'),
      errors: Type.Array(Violation, {
        description: 'Pointers are relative to the item (NDJSON: to the line)',
      }),
    }),
  ],
  { $id: 'ItemResult' },
);

export const BatchResults = Type.Object(
  {
    items: Type.Array(Type.Ref(ItemResult), {
      description: 'One entry per input item (NDJSON: per non-blank line), in order',
    }),
    accepted: Type.Integer(),
    rejected: Type.Integer(),
  },
  { $id: 'BatchResults' },
);

export const StoredMessage = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    ts: Type.Integer(),
    sender: Type.String(),
    message: Type.Record(Type.String(), Type.Unknown()),
    priority: Type.Union([Type.Integer(), Type.Null()]),
    'sent-from-ip': Type.Optional(Type.String({ description: '"redacted" unless revealed' })),
    received_at: Type.String({ format: 'date-time' }),
    trace_id: Type.Union([Type.String({ pattern: '^[0-9a-f]{32}$' }), Type.Null()], {
      description:
        'W3C trace id the message was sent under (the `traceparent` of the request, or the new trace ' +
        'intake started for it); null for messages stored without trace context',
    }),
    not_revealed: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'Reveal and export only: pointers of values shown as "not revealed" because their ciphertext was ' +
          'not made for this message and field (copied there from another row or field, or altered)',
      }),
    ),
  },
  { $id: 'StoredMessage' },
);
export type StoredMessage = Static<typeof StoredMessage>;

export const MessageStatus = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    status: Type.Union(
      [
        Type.Literal('stored'),
        Type.Literal('queued'),
        Type.Literal('dead_lettered'),
        Type.Literal('erased'),
        Type.Literal('unknown'),
      ],
      {
        description:
          '`stored`: readable at /v1/messages/{id}. `queued`: accepted and on the Postgres queue, not ' +
          'stored yet. `dead_lettered`: could not be stored. `erased`: deleted or dropped by a GDPR ' +
          'erasure. `unknown`: none of these can be shown: never accepted, past retention, another ' +
          "sender's, or (JetStream queue) accepted and not stored yet",
      },
    ),
    stored_at: Type.Optional(
      Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
        description: '`stored`: when the worker stored it (null if stored before this was recorded)',
      }),
    ),
    received_at: Type.Optional(
      Type.String({ format: 'date-time', description: '`stored`, `queued`, `dead_lettered`: when accepted' }),
    ),
    attempts: Type.Optional(
      Type.Integer({ description: '`queued`, `dead_lettered`: deliveries to the worker so far' }),
    ),
    trace_id: Type.Optional(
      Type.Union([Type.String({ pattern: '^[0-9a-f]{32}$' }), Type.Null()], {
        description:
          '`stored`, `queued`, `dead_lettered`: the W3C trace id the message was sent under (null ' +
          'without trace context)',
      }),
    ),
    failed_at: Type.Optional(Type.String({ format: 'date-time', description: '`dead_lettered`: when' })),
    erased_at: Type.Optional(
      Type.String({ format: 'date-time', description: '`erased`: when the erasure took effect' }),
    ),
    reason: Type.Optional(
      Type.String({
        description:
          '`dead_lettered`: why it could not be stored (the database error). `unknown`: ' +
          '`database_unavailable` when the database could not be asked',
      }),
    ),
  },
  { $id: 'MessageStatus', description: 'What became of an accepted message' },
);
export type MessageStatus = Static<typeof MessageStatus>;

export const MessageList = Type.Object(
  {
    items: Type.Array(Type.Ref(StoredMessage)),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: 'Pass as cursor for the next page',
    }),
  },
  { $id: 'MessageList' },
);

export const SubjectExport = Type.Object(
  {
    subject: Type.Object({ 'sent-from-ip': Type.String(), pseudonym: Type.String() }),
    messages: Type.Array(Type.Ref(StoredMessage), { description: 'With the IP and PII fields revealed' }),
    dead_letters: Type.Integer(),
    queued: Type.Integer({ description: 'Messages of the subject still queued, not yet stored' }),
  },
  { $id: 'SubjectExport' },
);

export const Erasure = Type.Object(
  {
    erased: Type.Object({
      messages: Type.Integer(),
      dead_letters: Type.Integer(),
      queued: Type.Integer({ description: 'Queued messages that will never be stored (tombstone)' }),
      idempotency_keys: Type.Integer({
        description: 'Idempotency-Key records of the subject’s requests, deleted',
      }),
    }),
  },
  { $id: 'Erasure' },
);

export const DeadLetter = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    sender: Type.String(),
    ts: Type.Integer(),
    message: Type.Record(Type.String(), Type.Unknown(), { description: 'PII fields as "redacted"' }),
    priority: Type.Union([Type.Integer(), Type.Null()]),
    'sent-from-ip': Type.Optional(Type.Literal('redacted')),
    received_at: Type.String({ format: 'date-time' }),
    trace_id: Type.Union([Type.String({ pattern: '^[0-9a-f]{32}$' }), Type.Null()], {
      description: 'W3C trace id the message was sent under; null when it came without trace context',
    }),
    failed_at: Type.String({ format: 'date-time' }),
    attempts: Type.Integer({ description: 'Deliveries before it was dead-lettered' }),
    reason: Type.String({ description: 'Why it could not be stored (the database error)' }),
  },
  { $id: 'DeadLetter' },
);
export type DeadLetter = Static<typeof DeadLetter>;

export const DeadLetterList = Type.Object(
  {
    items: Type.Array(Type.Ref(DeadLetter)),
    next_cursor: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'DeadLetterList' },
);

export const Replayed = Type.Object(
  { replayed: Type.Array(Type.String({ format: 'uuid' }), { description: 'Put back on the queue' }) },
  { $id: 'Replayed' },
);

export const Discarded = Type.Object({ discarded: Type.String({ format: 'uuid' }) }, { $id: 'Discarded' });

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String({ description: 'Stable machine-readable error code (docs/errors.md)' }),
    instance: Type.Optional(Type.String()),
    errors: Type.Optional(
      Type.Array(Violation, { maxItems: 100, description: 'The violations found, the first 100 of them' }),
    ),
    errors_total: Type.Optional(
      Type.Integer({ description: 'How many violations there were in all, when more than are listed' }),
    ),
    ids: Type.Optional(
      Type.Array(Type.String({ format: 'uuid' }), {
        description: 'ACCEPTANCE_UNKNOWN: the ids the messages were published under, to look up later',
      }),
    ),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details' },
);

/** Every named answer, for registration with Fastify (and so the OpenAPI components). */
export const API_SCHEMAS = [
  Accepted,
  BatchAccepted,
  ItemResult,
  BatchResults,
  StoredMessage,
  MessageStatus,
  MessageList,
  SubjectExport,
  Erasure,
  DeadLetter,
  DeadLetterList,
  Replayed,
  Discarded,
  Problem,
];

/*
 * Request parameters shared by several routes. Their formats are enforced by Ajv (contract/keywords.ts
 * defines `uuid` and `ipv4` exactly as intake means them) and documented in the OpenAPI document, so a
 * contract-test generator sends well-formed values: a path parameter not of its format is a 400
 * INVALID_REQUEST, a well-formed id that names nothing a 404 (docs/errors.md).
 */

/** The path parameter of the routes that name one message or dead letter. */
export const MessageIdParams = Type.Object({
  id: Type.String({
    format: 'uuid',
    maxLength: 200,
    description: 'A message id: a UUID (intake issues version 7 only)',
  }),
});

/** The path parameter of the GDPR subject routes. */
export const SubjectIpParams = Type.Object({
  ip: Type.String({
    format: 'ipv4',
    maxLength: 200,
    description: 'A dotted-decimal IPv4 address (four octets 0-255, no leading zeros)',
  }),
});

/**
 * A `since`/`until` query parameter: an RFC 3339 date-time or Unix seconds. The range (years 1 to 9999)
 * is checked by the route (http/routes/cursor.ts parseTime), which words its own 400.
 */
export const TimeParam = (description: string) =>
  Type.Union([Type.String({ format: 'date-time' }), Type.String({ pattern: '^[0-9]{1,12}$' })], {
    maxLength: 40,
    description: `${description}: RFC 3339 date-time, or Unix seconds`,
  });
