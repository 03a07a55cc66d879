/** The public surface of `intake/client` (package.json "exports"). */
export { IntakeClient, type IntakeClientOptions, IntakeError, type Message, type Problem } from './client.ts';
