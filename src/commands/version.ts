import { readFileSync } from 'node:fs';

/** package.json's version: two folders up from src/commands/ and from dist/commands/ alike. */
export function version(): string {
  try {
    return (
      JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'unknown';
  }
}
