import { type Static, Type } from '@sinclair/typebox';
import { ProblemError } from '../problem.ts';

export const MessageListQuery = Type.Object(
  {
    sender: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    since: Type.Optional(Type.String({ description: 'received at or after (RFC 3339 or Unix seconds)' })),
    until: Type.Optional(Type.String({ description: 'received before (RFC 3339 or Unix seconds)' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);
export type MessageListQuery = Static<typeof MessageListQuery>;

/** Opaque keyset cursor: base64url of "<received_at ISO>|<id>". */
export function encodeCursor(receivedAt: string, id: string): string {
  return Buffer.from(`${receivedAt}|${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { receivedAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const receivedAt = new Date(at ?? '');
  if (!id || !/^[0-9a-f-]{36}$/.test(id) || Number.isNaN(receivedAt.getTime())) {
    throw new ProblemError(
      'INVALID_REQUEST',
      'cursor is not valid: pass next_cursor from the previous page as is',
    );
  }
  return { receivedAt, id };
}
