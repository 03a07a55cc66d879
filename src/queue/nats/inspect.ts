import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
} from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { QueueInspection, QueueStoreInspection } from '../queue.ts';
import { natsConnectOptions } from './auth.ts';
import { messageStreamConfig } from './provision.ts';
import type { NatsQueueSettings } from './settings.ts';
import { streamHasRoom, streamUsage } from './stream-monitor.ts';

/** The stream settings compared with the configuration: those an operator sets (NATS_*) or must not change. */
const COMPARED = [
  'num_replicas',
  'max_age',
  'duplicate_window',
  'storage',
  'retention',
  'discard',
  'max_bytes',
  'max_msgs',
] as const;

/**
 * The message stream and the writer consumer as they are, read through `jsm` (stream and consumer info
 * only: nothing is created, fixed or written). `server` is the server the connection reached.
 */
export async function inspectStream(
  jsm: JetStreamManager,
  settings: NatsQueueSettings,
  server: string,
): Promise<QueueInspection> {
  const { nats } = settings;
  const inspection: QueueInspection = {
    kind: 'nats',
    server: { reachable: true, address: server, tlsVerified: Boolean(nats.tls?.caFile) },
    store: undefined,
    consumer: undefined,
  };
  // Any failure to read the stream (absent, or not visible to this user) reads as "not there yet".
  const info = await jsm.streams.info(nats.stream).catch(() => undefined);
  if (!info) return inspection;
  const want = messageStreamConfig(nats);
  const store: QueueStoreInspection = {
    name: nats.stream,
    drift: COMPARED.filter((k) => String(info.config[k]) !== String(want[k])).map((k) => ({
      setting: k,
      want: String(want[k]),
      have: String(info.config[k]),
    })),
    messages: info.state.messages,
    bytes: info.state.bytes,
    maxMessages: Math.max(0, info.config.max_msgs),
    maxBytes: Math.max(0, info.config.max_bytes),
    usage: streamUsage(info),
    hasRoom: streamHasRoom(info),
    trimAtPercent: nats.trimAtPercent,
    replicas: undefined,
  };
  if (nats.replicas > 1) {
    // The server lists the peers other than the leader.
    const others = info.cluster?.replicas ?? [];
    store.replicas = {
      configured: nats.replicas,
      peers: others.length + 1,
      lagging: others.filter((r) => r.offline || !r.current).map((r) => r.name),
    };
  }
  inspection.store = store;
  try {
    const ci = await jsm.consumers.info(nats.stream, nats.consumer);
    inspection.consumer = {
      name: nats.consumer,
      exists: true,
      waiting: ci.num_pending,
      unacknowledged: ci.num_ack_pending,
    };
  } catch (err) {
    const absent = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound;
    inspection.consumer = {
      name: nats.consumer,
      exists: false,
      error: absent ? undefined : (err as Error).message,
    };
  }
  return inspection;
}

/**
 * A look at the queue from a process that has not opened it (`intake doctor`): its own short
 * connection as `clientName`, with the configured credentials and TLS, then the same reading as
 * OpenedQueue.inspect. Unlike opening the queue it provisions nothing and writes no probe.
 */
export async function inspectNatsQueue(
  settings: NatsQueueSettings,
  clientName: string,
): Promise<QueueInspection> {
  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    nc = await connect({
      servers: settings.servers,
      timeout: 5000,
      name: clientName,
      ...natsConnectOptions(settings.nats),
    });
  } catch (err) {
    return unreachable(settings, (err as Error).message);
  }
  try {
    // No $JS.API.INFO request (checkAPI): a least-privilege user may not send one.
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    return await inspectStream(jsm, settings, nc.getServer());
  } finally {
    await nc.close();
  }
}

/** The inspection of a queue whose server did not answer. */
export function unreachable(settings: NatsQueueSettings, error: string): QueueInspection {
  return {
    kind: 'nats',
    server: { reachable: false, address: settings.servers.join(','), error },
    store: undefined,
    consumer: undefined,
  };
}
