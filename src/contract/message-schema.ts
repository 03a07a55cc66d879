import { type Static, Type } from '@sinclair/typebox';

/**
 * The message contract of docs/contract.md §1 as one JSON Schema: Ajv validates with it, TypeScript types come from
 * it and the OpenAPI document is generated from it. What plain JSON Schema cannot express (a timestamp
 * that is an integer or a digit string in range, "at least one non-null field", nesting depth, values
 * PostgreSQL cannot store) is carried by the `x-*` keywords implemented in `keywords.ts`.
 */

/** Largest accepted `ts`: 9999-12-31T23:59:59Z. */
export const MAX_TS = 253_402_300_799;
export const MAX_MESSAGE_DEPTH = 32;
export const MAX_BATCH = 1000;

export const Ts = Type.Unsafe<number | string>({
  'x-unix-seconds': true,
  anyOf: [
    { type: 'integer', minimum: 0, maximum: MAX_TS },
    { type: 'string', pattern: '^[0-9]+$' },
  ],
  description: 'Unix time in whole seconds, as an integer or a string of ASCII digits (0 to 253402300799).',
  examples: ['1530228282', 1530228282],
});

export const IncomingMessage = Type.Object(
  {
    ts: Ts,
    sender: Type.String({
      minLength: 1,
      maxLength: 256,
      'x-storable': true,
      examples: ['testy-test-service'],
    }),
    message: Type.Record(Type.String(), Type.Unknown(), {
      minProperties: 1,
      'x-min-non-null-properties': 1,
      'x-max-depth': MAX_MESSAGE_DEPTH,
      'x-storable': true,
      'x-no-protected-mark': true,
      description:
        'A JSON object with at least one non-null field, nested at most 32 levels, with no "$pii" key at any depth (intake\'s own mark for values it encrypted).',
      examples: [{ foo: 'bar', baz: 'bang' }],
    }),
    'sent-from-ip': Type.Optional(
      Type.String({
        format: 'ipv4',
        description: 'Dotted-decimal IPv4 address (personal data: pseudonymised and encrypted at the edge).',
        examples: ['1.2.3.4'],
      }),
    ),
    priority: Type.Optional(Type.Integer({ minimum: -2_147_483_648, maximum: 2_147_483_647, examples: [2] })),
  },
  { $id: 'IncomingMessage', additionalProperties: false, title: 'Message' },
);
export type IncomingMessage = Static<typeof IncomingMessage>;

export const IncomingBatch = Type.Object(
  { messages: Type.Array(Type.Ref(IncomingMessage), { minItems: 1, maxItems: MAX_BATCH }) },
  { $id: 'IncomingBatch', additionalProperties: false },
);
