import { after, describe, test } from 'node:test';
import { blockedStdoutCase, type Cleanups } from '../helpers/blocked-stdout.ts';

/** Issue 13: the reader of stdout stops or goes away under load; SIGTERM, then SIGINT to the group. */
const cleanups: Cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

// Concurrently: much of each case is waiting (start-up, then the lease of the batch the abort abandoned).
describe('intake start exits within its deadline whatever happens to stdout (issue 13)', {
  concurrency: true,
}, () => {
  test('the reader stops reading under load: SIGTERM then SIGINT to the group', () =>
    blockedStdoutCase(cleanups, 'stops reading', 'SIGTERM then SIGINT'));
  test('the reader goes away under load (EPIPE): SIGTERM then SIGINT to the group', () =>
    blockedStdoutCase(cleanups, 'goes away', 'SIGTERM then SIGINT'));
});
