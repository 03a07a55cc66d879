/**
 * The Postgres-backed queue's public face: all that code outside src/queue/postgres/ may import from it
 * (test/architecture/layers.test.ts holds this). Files inside the folder import each other directly.
 */
export { inspectPostgresQueue } from './inspect.ts';
export { openPostgresQueue } from './open.ts';
export type { PostgresQueueSettings } from './settings.ts';
