import { endpointForLog, type TracingConfig } from '../config.ts';
import type { Logger } from './logger.ts';
import { idOnlyTracing, type Tracing } from './tracing.ts';
import type { QueueTarget } from './tracing-sdk.ts';

/**
 * The process's tracing: `idOnlyTracing` unless the standard OpenTelemetry environment asks for OTLP
 * export (config/tracing.ts, read with the rest of the configuration), and then the OpenTelemetry SDK, loaded here with a dynamic `import()`:
 * with export off no OpenTelemetry module is loaded at all, so off costs nothing
 * (test/trace/otel-export.test.ts checks it).
 */
export async function startTracing(
  config: TracingConfig,
  role: string,
  log: Logger,
  queue?: QueueTarget,
): Promise<Tracing> {
  if (!config.export) return idOnlyTracing;
  const { createOtelTracing } = await import('./tracing-sdk.ts');
  const tracing = await createOtelTracing({ config, role, log, queue });
  log.info(
    { endpoint: endpointForLog(config.endpoint), protocol: config.protocol, sampler: config.sampler.name },
    'tracing: exporting spans over OTLP',
  );
  return tracing;
}
