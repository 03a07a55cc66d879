import { ConfigError, type Env } from './readers.ts';
import { type SAMPLERS, SETTINGS } from './settings.ts';

/**
 * Whether, and how, intake exports spans, from the standard OpenTelemetry variables (the `tracing`
 * rows of settings.ts; docs/tracing.md#export). Nothing here imports OpenTelemetry: with export off,
 * no OpenTelemetry module is ever loaded (src/ops/tracing-start.ts). What the exporter reads itself
 * (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, certificates) is only checked here.
 */
export type TracingConfig =
  | { export: false }
  | {
      export: true;
      protocol: OtlpProtocol;
      /** The URL spans are posted to: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, or OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`. */
      endpoint: string;
      sampler: SamplerConfig;
      /** OTEL_BSP_MAX_QUEUE_SIZE: spans held for export at most; the rest are dropped. */
      maxQueueSize: number;
      /** OTEL_BSP_SCHEDULE_DELAY: longest a span waits before it is exported. */
      scheduleDelayMs: number;
    };

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export type SamplerName = (typeof SAMPLERS)[number];

export interface SamplerConfig {
  name: SamplerName;
  /** For the ratio samplers: the share of traces kept, 0 to 1. */
  ratio: number;
}

/**
 * Reads every tracing setting (so the table and the loader agree: test/config/settings.test.ts) and
 * returns the problems only when export is on. Export is on only when an OTLP endpoint is set, the SDK
 * is not disabled (OTEL_SDK_DISABLED=true) and OTEL_TRACES_EXPORTER is not `none`.
 */
export function readTracing(env: Env): { tracing: TracingConfig; problems: string[] } {
  const problems: string[] = [];
  const get = <K extends keyof typeof SETTINGS>(name: K) =>
    SETTINGS[name].reader.read(env, name, problems) as ReturnType<(typeof SETTINGS)[K]['reader']['read']>;
  const endpoint = get('OTEL_EXPORTER_OTLP_ENDPOINT');
  const tracesEndpoint = get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const protocol = get('OTEL_EXPORTER_OTLP_PROTOCOL');
  const tracesProtocol = get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL');
  get('OTEL_EXPORTER_OTLP_HEADERS');
  get('OTEL_EXPORTER_OTLP_TIMEOUT');
  const disabled = get('OTEL_SDK_DISABLED');
  const exporter = get('OTEL_TRACES_EXPORTER');
  const samplerName = get('OTEL_TRACES_SAMPLER');
  const samplerArg = get('OTEL_TRACES_SAMPLER_ARG');
  get('OTEL_SERVICE_NAME');
  get('OTEL_RESOURCE_ATTRIBUTES');
  const maxQueueSize = get('OTEL_BSP_MAX_QUEUE_SIZE');
  const scheduleDelayMs = get('OTEL_BSP_SCHEDULE_DELAY');

  // A value set but refused (a bad URL) still means "export was asked for": its problem is reported.
  const asked = Boolean(
    endpoint ||
      tracesEndpoint ||
      env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() ||
      env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim(),
  );
  if (disabled || exporter === 'none' || !asked) return { tracing: { export: false }, problems: [] };

  let ratio = 1;
  if (samplerArg !== undefined && samplerName.endsWith('traceidratio')) {
    ratio = Number(samplerArg);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      problems.push(
        `OTEL_TRACES_SAMPLER_ARG=${JSON.stringify(samplerArg)} is not valid: set a ratio from 0 to 1`,
      );
      ratio = 1;
    }
  }
  return {
    tracing: {
      export: true,
      protocol: tracesProtocol ?? protocol ?? 'http/protobuf',
      endpoint: tracesEndpoint || `${endpoint.replace(/\/+$/, '')}/v1/traces`,
      sampler: { name: samplerName, ratio },
      maxQueueSize,
      scheduleDelayMs,
    },
    problems,
  };
}

/** `readTracing`, throwing its problems as one ConfigError. */
export function readTracingConfig(env: Env): TracingConfig {
  const { tracing, problems } = readTracing(env);
  if (problems.length > 0) throw new ConfigError(problems);
  return tracing;
}

/**
 * The OTLP endpoint as log lines show it: scheme, host, port and path. The user, password, query and
 * fragment are left out: a collector's credentials may sit there (`https://user:key@…`,
 * `…/v1/traces?api_key=…`), and logs are read by more people than the environment.
 */
export function endpointForLog(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    return `${url.origin}${url.pathname}`;
  } catch {
    return '(not a URL)';
  }
}
