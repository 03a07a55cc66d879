import { v7 as uuidv7 } from 'uuid';
import { randomBytesPooled } from './random-pool.ts';

/**
 * A new message id: UUIDv7, monotonic within this process (a counter orders ids made in the same
 * millisecond, as RFC 9562 §6.2 method 1 describes and as uuid's own default state does). The state is
 * kept here only so that uuid can be given pooled random bytes: its default draws from the CSPRNG once
 * per id.
 */
const state = { msecs: Number.NEGATIVE_INFINITY, seq: 0 };

export function newMessageId(): string {
  const random = randomBytesPooled(16);
  const now = Date.now();
  if (now > state.msecs) {
    state.msecs = now;
    state.seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
  } else {
    state.seq = (state.seq + 1) | 0;
    if (state.seq === 0) state.msecs++;
  }
  return uuidv7({ msecs: state.msecs, seq: state.seq, random });
}

const MESSAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** Whether `id` could be a message id (a UUIDv7, any case). */
export function isMessageId(id: string): boolean {
  return MESSAGE_ID.test(id);
}

/** The received_at encoded in a UUIDv7 (its first 48 bits, milliseconds since the epoch). */
export function uuidv7Time(id: string): Date {
  return new Date(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16));
}
