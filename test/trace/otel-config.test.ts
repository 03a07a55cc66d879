import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readTracing, readTracingConfig } from '../../src/config/tracing.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';

/** When export is on, and how the standard OTEL_* environment is read (docs/tracing.md#export). */

const ENDPOINT = 'http://collector:4318';

test('export is off unless an OTLP endpoint is set, and when disabled or `none`', () => {
  assert.deepEqual(readTracingConfig({}), { export: false });
  assert.deepEqual(readTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), { export: false });
  assert.deepEqual(readTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_SDK_DISABLED: 'TRUE' }), {
    export: false,
  });
  assert.deepEqual(
    readTracingConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'none' }),
    { export: false },
  );
  // Off wins even over values that would be refused when on.
  assert.deepEqual(readTracingConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), { export: false });
});

test('the endpoint: the generic one gets /v1/traces, the traces one is taken as is', () => {
  const generic = readTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: `${ENDPOINT}/` });
  assert.ok(generic.export);
  assert.equal(generic.endpoint, `${ENDPOINT}/v1/traces`);
  assert.equal(generic.protocol, 'http/protobuf', 'the default of the specification');
  assert.deepEqual(generic.sampler, { name: 'parentbased_always_on', ratio: 1 });

  const specific = readTracingConfig({
    OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector/custom',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.25',
  });
  assert.ok(specific.export);
  assert.equal(specific.endpoint, 'https://collector/custom');
  assert.equal(specific.protocol, 'http/json', 'the traces protocol wins over the generic one');
  assert.deepEqual(specific.sampler, { name: 'parentbased_traceidratio', ratio: 0.25 });
  assert.equal(specific.maxQueueSize, 2048, 'bounded by default');
});

test('the configuration of `intake start` carries it, and refuses what cannot be honoured', () => {
  assert.deepEqual(loadConfig({}).tracing, { export: false });
  const on = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_BSP_MAX_QUEUE_SIZE: '100' }).tracing;
  assert.ok(on.export);
  assert.equal(on.maxQueueSize, 100);
  assert.throws(
    () => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }),
    (e) => e instanceof ConfigError && /OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported/.test(e.message),
  );
});

test('what intake cannot honour is refused at start, every problem at once', () => {
  const err = (() => {
    try {
      readTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_TRACES_EXPORTER: 'otlp,zipkin',
        OTEL_TRACES_SAMPLER: 'sometimes',
      });
    } catch (e) {
      return e;
    }
    assert.fail('expected a ConfigError');
  })();
  assert.ok(err instanceof ConfigError);
  assert.equal(err.problems.length, 4, err.message);
  assert.match(err.message, /OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: .*http\/protobuf/);
  assert.match(err.message, /OTEL_TRACES_EXPORTER="otlp,zipkin" is not valid/);
  assert.match(err.message, /OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318" is not valid: set an `http:\/\/`/);
  assert.match(err.message, /OTEL_TRACES_SAMPLER="sometimes"/);

  assert.throws(
    () =>
      readTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http',
      }),
    /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http" is not valid/,
  );
  assert.throws(
    () =>
      readTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT,
        OTEL_TRACES_SAMPLER: 'traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '2',
      }),
    /OTEL_TRACES_SAMPLER_ARG="2" is not valid: set a ratio from 0 to 1/,
  );
});

test('a refused endpoint is echoed without the user, password or query it may carry', () => {
  const { problems } = readTracing({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:PASSWORD-1@otel:4318',
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'grpc://user:PASSWORD-2@otel:4317/v1/traces?api_key=TOKEN-3',
  });
  assert.deepEqual(problems, [
    'OTEL_EXPORTER_OTLP_ENDPOINT="…@otel:4318" is not valid: set an `http://` or `https://` URL',
    'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="grpc://…@otel:4317/v1/traces?…" is not valid: set an `http://` or `https://` URL',
  ]);
});
