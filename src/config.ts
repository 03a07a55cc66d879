/**
 * Everything intake reads from its environment, read and checked in one place (12-factor: a variable,
 * or `NAME_FILE` for a mounted secret). This is the public face of src/config/:
 * - settings.ts: the table of settings (reader with default and bounds, one line of docs, secret or not);
 * - readers.ts: the readers, shared with the pod watcher, which collect every problem (ConfigError);
 * - rules.ts: what involves several settings; needs.ts: what a command declares it reads;
 * - load.ts: environment → Config; docs.ts: the README and production.md tables.
 */
export { loadConfig } from './config/load.ts';
export type { ConfigNeeds, ConfigRequest } from './config/needs.ts';
export { ConfigError } from './config/readers.ts';
export { isLoopback } from './config/rules.ts';
export { defaultMaxConnections } from './config/settings.ts';
export type { OtlpProtocol, SamplerConfig, TracingConfig } from './config/tracing.ts';
export { endpointForLog } from './config/tracing.ts';
export type { AccessLog, Config, NatsConfig } from './config/types.ts';
