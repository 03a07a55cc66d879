import { ConfigError, type Env, notValid } from '../config/readers.ts';

/**
 * Whether, and how, intake exports spans, read from the standard OpenTelemetry environment
 * (docs/tracing.md#export). Nothing here imports OpenTelemetry: with export off, no OpenTelemetry
 * module is ever loaded. What the exporter reads itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
 * _COMPRESSION, certificates) is left to it.
 */
export type TracingConfig =
  | { export: false }
  | {
      export: true;
      protocol: OtlpProtocol;
      /** The URL spans are posted to: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, or OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`. */
      endpoint: string;
      sampler: SamplerConfig;
    };

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

export interface SamplerConfig {
  name: SamplerName;
  /** For the ratio samplers: the share of traces kept, 0 to 1. */
  ratio: number;
}

const SAMPLERS: SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

/** Unset and empty mean the same (the OpenTelemetry environment specification says so). */
function value(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/**
 * Export is on only when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT), the SDK is not disabled (OTEL_SDK_DISABLED=true) and
 * OTEL_TRACES_EXPORTER is not `none`. A value intake cannot honour (gRPC, another exporter, a bad
 * sampler) is a ConfigError at start rather than spans silently lost.
 */
export function readTracingConfig(env: Env): TracingConfig {
  if (value(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { export: false };
  const exporters = (value(env, 'OTEL_TRACES_EXPORTER') ?? 'otlp')
    .toLowerCase()
    .split(',')
    .map((s) => s.trim());
  if (exporters.includes('none')) return { export: false };
  const signal = value(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const base = value(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (!signal && !base) return { export: false };
  const endpoint = signal ?? `${base!.replace(/\/+$/, '')}/v1/traces`;

  const problems: string[] = [];
  const other = exporters.filter((e) => e !== 'otlp');
  if (other.length > 0)
    problems.push(
      notValid(
        'OTEL_TRACES_EXPORTER',
        env.OTEL_TRACES_EXPORTER ?? '',
        '`otlp` or `none` (intake exports over OTLP only)',
      ),
    );
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT']) {
    const v = value(env, name);
    if (v !== undefined && !isHttpUrl(v)) problems.push(notValid(name, v, 'an `http://` or `https://` URL'));
  }
  const protocolName = value(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = value(env, protocolName) ?? 'http/protobuf';
  if (protocol === 'grpc')
    problems.push(
      `${protocolName}=grpc is not supported: intake exports over OTLP/HTTP only; set http/protobuf (the default) or http/json, and point the endpoint at the collector's HTTP port (4318)`,
    );
  else if (protocol !== 'http/protobuf' && protocol !== 'http/json')
    problems.push(notValid(protocolName, protocol, '`http/protobuf` (the default) or `http/json`'));

  const sampler = readSampler(env, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return { export: true, protocol: protocol as OtlpProtocol, endpoint, sampler };
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, as the OpenTelemetry environment specification reads them. */
function readSampler(env: Env, problems: string[]): SamplerConfig {
  const raw = value(env, 'OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on';
  const name = raw.toLowerCase() as SamplerName;
  if (!SAMPLERS.includes(name)) {
    problems.push(notValid('OTEL_TRACES_SAMPLER', raw, `one of ${SAMPLERS.join(', ')}`));
    return { name: 'parentbased_always_on', ratio: 1 };
  }
  const arg = value(env, 'OTEL_TRACES_SAMPLER_ARG');
  if (arg === undefined || !name.endsWith('traceidratio')) return { name, ratio: 1 };
  const ratio = Number(arg);
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    problems.push(notValid('OTEL_TRACES_SAMPLER_ARG', arg, 'a ratio from 0 to 1'));
    return { name, ratio: 1 };
  }
  return { name, ratio };
}
