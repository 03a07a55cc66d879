/**
 * The NATS JetStream queue's public face, as nats.js gives each package a `mod.ts`: all that code
 * outside src/queue/nats/ may import from it (test/architecture/layers.test.ts holds this). Files inside
 * the folder import each other directly.
 */
export { inspectNatsQueue } from './inspect.ts';
export { openNatsQueue } from './open.ts';
export { NatsProvisionError } from './provision.ts';
export type { NatsQueueSettings } from './settings.ts';
export { setUpNatsQueue } from './setup.ts';
