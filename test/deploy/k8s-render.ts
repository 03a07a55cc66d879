import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { REPO } from './tools.ts';

const run = promisify(execFile);

/** A rendered Kubernetes object, loosely typed: the schema check is what proves its shape. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  // biome-ignore lint/suspicious/noExplicitAny: arbitrary manifest content, walked by the checks
  [field: string]: any;
}

export const OVERLAYS = ['dev', 'prod'] as const;
export type Overlay = (typeof OVERLAYS)[number];

export const overlayDir = (overlay: string) => join(REPO, 'deploy/k8s/overlays', overlay);

/** Parses a multi-document YAML stream; any syntax error throws. */
export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`YAML error: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS();
    if (value !== null && value !== undefined) out.push(value as K8sObject);
  }
  return out;
}

/** `kubectl kustomize <dir>` (offline), as text. */
export async function kustomize(dir: string): Promise<string> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

export async function renderOverlay(overlay: string): Promise<K8sObject[]> {
  return parseManifests(await kustomize(overlayDir(overlay)));
}

/** `Kind/name` for messages. */
export const ref = (o: K8sObject) => `${o.kind}/${o.metadata?.name}`;
