#!/usr/bin/env node
// Entry point of the pod watcher. In a checkout (src/ present and tsx installed) it runs the TypeScript
// source directly, so a fresh clone needs no build step; in the container image only dist/ exists.
import { existsSync } from 'node:fs';

const fromSource = existsSync(new URL('../src/pod-watcher/main.ts', import.meta.url));
if (fromSource) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/pod-watcher/main.ts');
} else {
  await import('../dist/pod-watcher/main.js');
}
