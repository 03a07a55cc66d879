import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startIntakeProcess } from '../../harness/intake-process.ts';
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts';

/**
 * `intake start` with the OTEL_* environment: export starts with the process and is flushed last on a
 * stop; a protocol intake cannot speak stops the start with a line that says what to set.
 */
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function embedded(): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'intake-otel-'));
  dirs.push(dir);
  return { INTAKE_DATA_DIR: dir, DATABASE_URL: '', NATS_URL: '', LOG_LEVEL: 'debug' };
}

test('export on: the start says where spans go, and a stop releases tracing last', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const p = await startIntakeProcess(
    'start',
    { ...embedded(), OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
    { waitReady: true, timeoutMs: 60_000 },
  );
  t.after(() => p.stop(5000));
  const on = p.logs.find((l) => l.msg === 'tracing: exporting spans over OTLP');
  assert.ok(on, 'the start logs that export is on');
  assert.equal(on.endpoint, receiver.tracesUrl);
  assert.equal(on.protocol, 'http/json');
  p.kill('SIGTERM');
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  const steps = p.logs.filter((l) => l.msg === 'shutdown step done').map((l) => String(l.step));
  assert.equal(steps.at(-1), 'tracing', `flushed after everything that makes spans: ${steps}`);
});

test('export off: ids only, no line about export', async (t) => {
  const p = await startIntakeProcess('start', embedded(), { waitReady: true, timeoutMs: 60_000 });
  t.after(() => p.stop(5000));
  p.kill('SIGTERM');
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.ok(!p.logs.some((l) => String(l.msg).startsWith('tracing')));
  // The step is there either way (ids only have nothing to flush), still last.
  const steps = p.logs.filter((l) => l.msg === 'shutdown step done').map((l) => String(l.step));
  assert.equal(steps.at(-1), 'tracing');
});

test('OTLP over gRPC is refused as a configuration error, saying what to set', async (t) => {
  const p = await startIntakeProcess(
    'start',
    {
      ...embedded(),
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    },
    { waitReady: false, timeoutMs: 60_000 },
  );
  t.after(() => p.stop(5000));
  assert.deepEqual(await p.exited, { code: 78, signal: null }, 'a configuration error');
  assert.match(
    p.stderr.join(''),
    /invalid configuration:\n {2}- OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: .*http\/protobuf/,
  );
});
