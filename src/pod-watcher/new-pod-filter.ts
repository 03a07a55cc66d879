import type { V1Pod } from '@kubernetes/client-node';

/** Default cap on remembered pod UIDs: ample for a large cluster, a few MB at most. */
export const DEFAULT_MAX_SEEN = 50_000;

/**
 * Decides which informer notifications are new pods, so each is reported once per leadership term.
 *
 * A pod is new when (1) it was not in the baseline (the first list after the term began: what existed when
 * the watch started), (2) its UID has not been seen before, and (3) its creationTimestamp is not before the
 * term began. (3) is compared at whole-second resolution, which is all creationTimestamp carries.
 *
 * UIDs rather than names: after a relist client-node reports a pod deleted and recreated under the same
 * name (StatefulSet pods) as an update of the old one, and a 410 relist or a restarted informer replays
 * pods already reported. The UID set is bounded: DELETE events evict their UID, and past `maxSeen` the
 * oldest entries go first; an evicted pod can only be re-reported if it is also re-listed with no
 * baseline, which (3) then mostly catches.
 */
export class NewPodFilter {
  private readonly seen = new Map<string, true>();
  private baselined = false;
  private readonly termStartSecondMs: number;

  /**
   * @param termStartMs wall-clock time (ms) at which this replica started leading.
   * @param maxSeen how many UIDs to remember at most.
   */
  constructor(
    termStartMs: number,
    private readonly maxSeen = DEFAULT_MAX_SEEN,
  ) {
    this.termStartSecondMs = Math.floor(termStartMs / 1000) * 1000;
  }

  /** True once the baseline list has been taken. */
  get hasBaseline(): boolean {
    return this.baselined;
  }

  /** How many UIDs are remembered (for tests and debugging). */
  get size(): number {
    return this.seen.size;
  }

  /** Records the first successful list of the term; later calls do nothing (relists are not baselines). */
  baseline(pods: readonly V1Pod[]): void {
    if (this.baselined) return;
    this.baselined = true;
    for (const pod of pods) this.remember(pod.metadata?.uid);
  }

  /** An add or update notification: true exactly once per new pod, then never again for its UID. */
  isNew(pod: V1Pod): boolean {
    const uid = pod.metadata?.uid;
    if (!uid || this.seen.has(uid)) return false;
    this.remember(uid);
    // Before the baseline exists, everything comes from the initial list (informers list first).
    if (!this.baselined) return false;
    const created = creationTime(pod);
    return created !== undefined && created >= this.termStartSecondMs;
  }

  /** A delete notification: the UID will not come back, so stop remembering it. */
  forget(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid) this.seen.delete(uid);
  }

  private remember(uid: string | undefined): void {
    if (!uid) return;
    this.seen.set(uid, true);
    while (this.seen.size > this.maxSeen) {
      const oldest = this.seen.keys().next().value;
      if (oldest === undefined) break;
      this.seen.delete(oldest);
    }
  }
}

/** creationTimestamp in ms: a Date from list calls, a string from watch events (which are not deserialised). */
export function creationTime(pod: V1Pod): number | undefined {
  const raw: unknown = pod.metadata?.creationTimestamp;
  if (raw === undefined || raw === null) return undefined;
  const ms = raw instanceof Date ? raw.getTime() : Date.parse(String(raw));
  return Number.isNaN(ms) ? undefined : ms;
}
