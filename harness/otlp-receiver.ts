import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { waitFor } from './db.ts';

/**
 * A test OTLP/HTTP trace receiver: a real HTTP server on 127.0.0.1 taking `POST /v1/traces` as
 * `application/x-protobuf` (decoded with protobufjs from the official .proto files vendored in
 * harness/otlp-proto/, so the exporter's own serializer never checks itself) or `application/json`
 * (OTLP/JSON: hex ids, enums as numbers), gzip or not. It keeps every span it decodes, flattened for
 * assertions.
 */

/** OTLP span kinds (trace.proto `Span.SpanKind`). */
export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

export type AttributeValue = string | number | boolean | AttributeValue[] | undefined;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, AttributeValue>;
  links: { traceId: string; spanId: string; traceState: string }[];
  traceState: string;
  /** `Status.code`: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  events: { name: string; attributes: Record<string, AttributeValue> }[];
  /** The attributes of the resource that sent the span. */
  resource: Record<string, AttributeValue>;
  /** How the request carrying it was encoded. */
  encoding: 'protobuf' | 'json';
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:port`, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  /** `url` + `/v1/traces`, for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. */
  tracesUrl: string;
  spans: ReceivedSpan[];
  /** Requests received, whatever was answered. */
  requests: number;
  /** Answer every later request with this status (e.g. 503 for a collector that refuses), or 200 again. */
  answerWith(status: number): void;
  /** Waits until `check` holds for the spans received so far, and returns them. */
  waitForSpans(
    what: string,
    check: (spans: ReceivedSpan[]) => boolean,
    timeoutMs?: number,
  ): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

const PROTO_ROOT = fileURLToPath(new URL('./otlp-proto/', import.meta.url));

let requestType: protobuf.Type | undefined;
function exportTraceServiceRequest(): protobuf.Type {
  if (requestType) return requestType;
  const root = new protobuf.Root();
  // The .proto files import each other by paths relative to the root of the vendored tree.
  root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : PROTO_ROOT + target);
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
  requestType = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
  return requestType;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  let status = 200;
  let requests = 0;
  const server = createServer((req, res) => {
    requests += 1;
    handle(req, res).catch((err: unknown) => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    if (status !== 200) {
      res.writeHead(status).end();
      return;
    }
    let body = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
    const type = req.headers['content-type'] ?? '';
    if (type.startsWith('application/x-protobuf')) {
      const msg = exportTraceServiceRequest().decode(body);
      const obj = exportTraceServiceRequest().toObject(msg, {
        longs: Number,
        enums: Number,
        bytes: String, // base64
        oneofs: true, // AnyValue's `value` then names the member that is set
      }) as OtlpRequest;
      spans.push(...flatten(obj, 'protobuf'));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    } else if (type.startsWith('application/json')) {
      spans.push(...flatten(JSON.parse(body.toString('utf8')) as OtlpRequest, 'json'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } else {
      res.writeHead(415).end();
    }
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    tracesUrl: `${url}/v1/traces`,
    spans,
    get requests() {
      return requests;
    },
    answerWith(s) {
      status = s;
    },
    waitForSpans(what, check, timeoutMs = 15_000) {
      return waitFor(what, () => (check(spans) ? spans : undefined), timeoutMs);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// The decoded request, as protobufjs's toObject and OTLP/JSON both give it (ids: base64 or hex).
interface OtlpAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: OtlpAnyValue[] };
  value?: string;
}
interface OtlpKeyValue {
  key: string;
  value?: OtlpAnyValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  name: string;
  kind?: number;
  attributes?: OtlpKeyValue[];
  links?: { traceId: string; spanId: string; traceState?: string }[];
  events?: { name: string; attributes?: OtlpKeyValue[] }[];
  status?: { code?: number };
}
interface OtlpRequest {
  resourceSpans?: {
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: { spans?: OtlpSpan[] }[];
  }[];
}

function flatten(req: OtlpRequest, encoding: 'protobuf' | 'json'): ReceivedSpan[] {
  // OTLP/JSON writes ids as hex (the one departure from protobuf's JSON mapping); protobuf bytes are base64 here.
  const id = (v: string | undefined) =>
    !v ? '' : encoding === 'json' ? v.toLowerCase() : Buffer.from(v, 'base64').toString('hex');
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? [])
      for (const s of ss.spans ?? [])
        out.push({
          traceId: id(s.traceId),
          spanId: id(s.spanId),
          parentSpanId: id(s.parentSpanId),
          name: s.name,
          kind: s.kind ?? 0,
          attributes: attributes(s.attributes),
          links: (s.links ?? []).map((l) => ({
            traceId: id(l.traceId),
            spanId: id(l.spanId),
            traceState: l.traceState ?? '',
          })),
          traceState: s.traceState ?? '',
          statusCode: s.status?.code ?? 0,
          events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attributes(e.attributes) })),
          resource,
          encoding,
        });
  }
  return out;
}

function attributes(kvs: OtlpKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

function anyValue(v: OtlpAnyValue | undefined): AttributeValue {
  if (!v) return undefined;
  // From protobufjs, `value` names the member set; OTLP/JSON has only that member.
  const which = v.value ?? Object.keys(v).find((k) => v[k as keyof OtlpAnyValue] !== undefined);
  switch (which) {
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'intValue':
      return Number(v.intValue);
    case 'doubleValue':
      return v.doubleValue;
    case 'arrayValue':
      return (v.arrayValue?.values ?? []).map(anyValue);
    default:
      return undefined;
  }
}
