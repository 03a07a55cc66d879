import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../ops/logger.ts';
import { creationTime } from './new-pod-filter.ts';

/** The fields logged for a new pod. Field names avoid the shared logger's redacted keys (`message`, `ip`). */
export interface PodSummary {
  namespace: string;
  pod: string;
  uid: string;
  /** Node the pod is scheduled on; null while it is still pending scheduling. */
  node: string | null;
  phase: string | null;
  images: string[];
  initImages?: string[];
  /** The controlling owner (e.g. ReplicaSet, StatefulSet, Job), else the first owner, else null. */
  owner: { kind: string; name: string } | null;
  labels: Record<string, string>;
  created: string | null;
}

/** Extracts what an operator wants to see about a new pod. */
export function summarisePod(pod: V1Pod): PodSummary {
  const meta = pod.metadata ?? {};
  const owners = meta.ownerReferences ?? [];
  const owner = owners.find((o) => o.controller) ?? owners[0];
  const initImages = (pod.spec?.initContainers ?? []).map((c) => c.image ?? '');
  const created = creationTime(pod);
  return {
    namespace: meta.namespace ?? '',
    pod: meta.name ?? '',
    uid: meta.uid ?? '',
    node: pod.spec?.nodeName || null,
    phase: pod.status?.phase ?? null,
    images: (pod.spec?.containers ?? []).map((c) => c.image ?? ''),
    ...(initImages.length ? { initImages } : {}),
    owner: owner ? { kind: owner.kind, name: owner.name } : null,
    labels: { ...(meta.labels ?? {}) },
    created: created === undefined ? null : new Date(created).toISOString(),
  };
}

/** Writes the one structured line per new pod. */
export function logNewPod(logger: Logger, pod: V1Pod): void {
  logger.info({ event: 'pod_created', ...summarisePod(pod) }, 'new pod');
}
