import { after, test } from 'node:test';
import { blockedStdoutCase, type Cleanups } from '../helpers/blocked-stdout.ts';

/**
 * Issue 13 as first seen: one Ctrl-C (SIGINT to the process group) under load while stdout is not being
 * read. (With the reader gone instead, the old code already exited: pino stopped writing on EPIPE.)
 */
const cleanups: Cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('the reader stops reading under load: one Ctrl-C drains completely and exits 0', () =>
  blockedStdoutCase(cleanups, 'stops reading', 'SIGINT'));
