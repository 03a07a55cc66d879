/** The public surface of `@intake/client` (packages/client: package.json "exports"). */
// `.js`, not `.ts` like the rest of src/: tsc rewrites the extension in the emitted JavaScript but not in
// the emitted index.d.ts, and a consumer's TypeScript reads that file.
export {
  IntakeClient,
  type IntakeClientOptions,
  IntakeError,
  type Message,
  type MessageStatus,
  NotStoredError,
  type Problem,
  type TraceHeaders,
} from './client.js';
