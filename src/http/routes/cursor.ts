import { type Static, Type } from '@sinclair/typebox';
import { TimeParam } from '../../contract/api-schemas.ts';
import { isMessageId } from '../../contract/message-id.ts';
import { ProblemError } from '../problem.ts';

export const MessageListQuery = Type.Object(
  {
    sender: Type.Optional(Type.String({ minLength: 1, maxLength: 256, 'x-storable': true })),
    since: Type.Optional(TimeParam('received at or after')),
    until: Type.Optional(TimeParam('received before')),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);
export type MessageListQuery = Static<typeof MessageListQuery>;

/** The instants PostgreSQL's timestamptz and intake's ids can both hold: years 1 to 9999. */
const MIN_TIME = new Date('0001-01-01T00:00:00Z').getTime();
const MAX_TIME = new Date('9999-12-31T23:59:59.999Z').getTime();

function inRange(d: Date): boolean {
  const t = d.getTime();
  return !Number.isNaN(t) && t >= MIN_TIME && t <= MAX_TIME;
}

/** Opaque keyset cursor: base64url of "<RFC 3339 time>|<message id>" (messages and dead letters alike). */
export function encodeCursor(at: string, id: string): string {
  return Buffer.from(`${at}|${id}`).toString('base64url');
}

/** The position a cursor names: the time exactly as issued (microseconds kept) and the id. */
export function decodeCursor(cursor: string): { at: string; id: string } {
  const [at, id, extra] = Buffer.from(cursor, 'base64url').toString().split('|');
  const valid =
    at !== undefined && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$/.test(at) && inRange(new Date(at));
  if (extra !== undefined || !id || !isMessageId(id) || !valid) {
    throw new ProblemError(
      'INVALID_REQUEST',
      'cursor is not valid: pass next_cursor from the previous page as is',
      {
        errors: [{ pointer: '/cursor', detail: 'is not a cursor this API issued' }],
      },
    );
  }
  return { at: at!, id: id.toLowerCase() };
}

/** A `since`/`until` value: RFC 3339 or Unix seconds, between the years 1 and 9999. */
export function parseTime(v: string, name: string): Date {
  const d = /^\d{1,12}$/.test(v)
    ? new Date(Number(v) * 1000)
    : /^\d/.test(v)
      ? new Date(v)
      : new Date(Number.NaN);
  if (!inRange(d)) {
    throw new ProblemError(
      'INVALID_REQUEST',
      `${name} must be RFC 3339 or Unix seconds, from year 1 to 9999`,
      {
        errors: [{ pointer: `/${name}`, detail: 'must be RFC 3339 or Unix seconds, from year 1 to 9999' }],
      },
    );
  }
  return d;
}
