import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { commandNamed } from '../../src/commands/registry.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { startTestApp } from '../helpers/app.ts';

/** Starts intake with INTAKE_ACCESS_LOG=mode, sends a 202 and a 400, returns the statuses logged. */
async function loggedStatuses(mode: string | undefined): Promise<number[]> {
  const lines: Array<{ msg?: string; status?: number; route?: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const app = await startTestApp('accesslog', {
    roles: ['api'],
    env: mode === undefined ? {} : { INTAKE_ACCESS_LOG: mode },
    log: pino({ level: 'info' }, sink),
  });
  try {
    const ok = await app.post('/v1/messages', { ts: 1, sender: 'a', message: { a: 1 } });
    assert.equal(ok.status, 202);
    const bad = await app.post('/v1/messages', { ts: 1, sender: 'a', message: {} });
    assert.equal(bad.status, 400);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    // Whatever the access log says, metrics count every request.
    assert.match(metrics, /intake_http_requests_total\{[^}]*status="202"[^}]*\} 1/);
    assert.match(metrics, /intake_http_requests_total\{[^}]*status="400"[^}]*\} 1/);
  } finally {
    await app.close();
  }
  return lines.filter((l) => l.msg === 'request' && l.route === '/v1/messages').map((l) => l.status!);
}

test('INTAKE_ACCESS_LOG: all (the default) logs every request', async () => {
  assert.deepEqual(await loggedStatuses(undefined), [202, 400]);
  assert.deepEqual(await loggedStatuses('all'), [202, 400]);
});

test('INTAKE_ACCESS_LOG=errors logs only answers of 400 and above', async () => {
  assert.deepEqual(await loggedStatuses('errors'), [400]);
});

test('INTAKE_ACCESS_LOG=off logs no request', async () => {
  assert.deepEqual(await loggedStatuses('off'), []);
});

test('INTAKE_ACCESS_LOG with another value stops start-up, naming the values', () => {
  assert.throws(
    () => loadConfig({ INTAKE_ACCESS_LOG: 'some' }, commandNamed('api')),
    (err: unknown) =>
      err instanceof ConfigError &&
      /INTAKE_ACCESS_LOG="some" is not valid: set one of all, errors, off/.test(err.message),
  );
});
