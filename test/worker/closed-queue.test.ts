import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { type NatsServer, startNatsServer, uniqueStream } from '../../harness/nats.ts';

/**
 * A queue that answers "nothing" at once, as a closed NATS consumer does, must not make the worker's
 * receive loop spin on resolved promises: that starves the event loop, so no timer, signal handler or
 * shutdown step of the process runs again. The worker runs in a child process that the test kills if its
 * own 500 ms timer has not fired within 20 s.
 */
let server: NatsServer;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server?.stop();
});

test('a worker on a closed queue waits between receives instead of spinning', async () => {
  const names = uniqueStream('closed');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'test/fixtures/worker-on-closed-queue.ts',
      server.url,
      names.stream,
      names.subject,
      names.consumer,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  clearTimeout(killer);
  assert.equal(signal, null, 'the worker process starved its own timers and was killed after 20 s');
  assert.equal(code, 0);
  const { receives } = JSON.parse(out) as { receives: number };
  // 500 ms of asking every 50 ms at most: about 10, never thousands.
  assert.ok(receives >= 1 && receives <= 20, `receives in 500 ms: ${receives}`);
});
