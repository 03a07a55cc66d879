import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

/**
 * Export off costs nothing: a process that imports the runtime and starts tracing without the OTLP
 * environment loads no OpenTelemetry SDK or exporter module (recorded by a module resolve hook, and
 * CommonJS's cache; @opentelemetry/api is prom-client's, for exemplars, and loaded either way), and
 * the same process with an endpoint set does load them (so the check can see a load).
 */
const run = promisify(execFile);

async function startIn(
  env: Record<string, string>,
): Promise<{ idOnly: boolean; required: number; resolved: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'otel-off-'));
  try {
    const file = join(dir, 'imports.txt');
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        '--import',
        './test/fixtures/record-otel-imports.mjs',
        'test/fixtures/start-tracing.ts',
      ],
      { env: { ...clean, ...env, OTEL_IMPORTS_FILE: file } },
    );
    let resolved: string[] = [];
    try {
      resolved = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    } catch {}
    return {
      ...(JSON.parse(stdout.trim().split('\n').pop()!) as { idOnly: boolean; required: number }),
      resolved,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('export off: the runtime and startTracing load no OpenTelemetry module', async () => {
  const off = await startIn({});
  assert.equal(off.idOnly, true);
  assert.deepEqual(off.resolved, []);
  assert.equal(off.required, 0);

  const disabled = await startIn({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
    OTEL_SDK_DISABLED: 'true',
  });
  assert.equal(disabled.idOnly, true);
  assert.deepEqual(disabled.resolved, []);
});

test('export on: the same process loads the SDK and the one exporter asked for', async () => {
  const on = await startIn({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  });
  assert.equal(on.idOnly, false);
  assert.ok(on.required > 0, 'the CommonJS check sees SDK files when they load');
  assert.ok(
    on.resolved.some((u) => u.includes('/@opentelemetry/sdk-trace/')),
    on.resolved.join('\n'),
  );
  assert.ok(on.resolved.some((u) => u.includes('/@opentelemetry/exporter-trace-otlp-http/')));
  assert.ok(!on.resolved.some((u) => u.includes('/@opentelemetry/exporter-trace-otlp-proto/')));
});
