import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import { statusOf, withSignal } from './kube-client.ts';

/**
 * The fields of a Lease's spec that leader election reads and writes (client-go's LeaderElectionRecord).
 * Times are kept as the strings the API server returned: the elector only compares them for change, it
 * never trusts another replica's clock.
 */
export interface LeaderElectionRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime: string;
  renewTime: string;
  leaseTransitions: number;
}

/** A Lease as last read (or written), with what is needed to update it optimistically. */
export interface LeaseSnapshot {
  record: LeaderElectionRecord;
  /** Sent back on update; the API server answers 409 Conflict if the Lease changed since. */
  resourceVersion: string;
  /** The whole object, so an update keeps labels and annotations others put on it. */
  lease: V1Lease;
}

/** Someone else wrote the Lease first: 409 AlreadyExists on create, 409 Conflict on update. */
export class LeaseConflictError extends Error {
  readonly code = 'LEASE_CONFLICT';
  override name = 'LeaseConflictError';
}

/** Storage of the election record. The elector depends on this, not on the API client, so it stays small. */
export interface LeaseLock {
  /** `namespace/name`, for logs. */
  readonly description: string;
  /** The current Lease, or null if it does not exist. */
  get(signal: AbortSignal): Promise<LeaseSnapshot | null>;
  /** Creates the Lease; throws LeaseConflictError if it already exists. */
  create(record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaseSnapshot>;
  /** Replaces the spec of `previous`; throws LeaseConflictError if the Lease changed since it was read. */
  update(previous: LeaseSnapshot, record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaseSnapshot>;
}

function timeString(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : '';
}

function toSnapshot(lease: V1Lease): LeaseSnapshot {
  const spec = lease.spec ?? {};
  return {
    record: {
      holderIdentity: spec.holderIdentity ?? '',
      leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
      // client-node 1.4 hands MicroTime fields back as raw strings although they are typed as Dates.
      acquireTime: timeString(spec.acquireTime),
      renewTime: timeString(spec.renewTime),
      leaseTransitions: spec.leaseTransitions ?? 0,
    },
    resourceVersion: lease.metadata?.resourceVersion ?? '',
    lease,
  };
}

// MicroTime must be written with six fractional digits or the API server rejects the Lease (a plain
// Date's toISOString has three); V1MicroTime pads it.
function microTime(iso: string): V1MicroTime | undefined {
  return iso ? new V1MicroTime(iso) : undefined;
}

function toSpec(record: LeaderElectionRecord): V1Lease['spec'] {
  return {
    holderIdentity: record.holderIdentity,
    leaseDurationSeconds: record.leaseDurationSeconds,
    acquireTime: microTime(record.acquireTime),
    renewTime: microTime(record.renewTime),
    leaseTransitions: record.leaseTransitions,
  };
}

/** A LeaseLock on a `coordination.k8s.io/v1` Lease, via client-node's CoordinationV1Api. */
export class KubeLeaseLock implements LeaseLock {
  readonly description: string;
  private readonly api: CoordinationV1Api;

  constructor(
    kubeConfig: KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
  ) {
    this.api = kubeConfig.makeApiClient(CoordinationV1Api);
    this.description = `${namespace}/${name}`;
  }

  async get(signal: AbortSignal): Promise<LeaseSnapshot | null> {
    try {
      const lease = await this.api.readNamespacedLease(
        { name: this.name, namespace: this.namespace },
        withSignal(signal),
      );
      return toSnapshot(lease);
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async create(record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaseSnapshot> {
    const body: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.name, namespace: this.namespace },
      spec: toSpec(record),
    };
    try {
      return toSnapshot(
        await this.api.createNamespacedLease({ namespace: this.namespace, body }, withSignal(signal)),
      );
    } catch (err) {
      if (statusOf(err) === 409) throw new LeaseConflictError(`Lease ${this.description} already exists`);
      throw err;
    }
  }

  async update(
    previous: LeaseSnapshot,
    record: LeaderElectionRecord,
    signal: AbortSignal,
  ): Promise<LeaseSnapshot> {
    const body: V1Lease = {
      ...previous.lease,
      metadata: { ...previous.lease.metadata, resourceVersion: previous.resourceVersion },
      spec: { ...previous.lease.spec, ...toSpec(record) },
    };
    try {
      return toSnapshot(
        await this.api.replaceNamespacedLease(
          { name: this.name, namespace: this.namespace, body },
          withSignal(signal),
        ),
      );
    } catch (err) {
      if (statusOf(err) === 409) {
        throw new LeaseConflictError(
          `Lease ${this.description} changed since resourceVersion ${previous.resourceVersion}`,
        );
      }
      throw err;
    }
  }
}
