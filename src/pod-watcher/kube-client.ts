// @kubernetes/client-node is pinned to 1.4.x on purpose: 2.x depends on undici 8, needs Node >= 22.19 and
// crashes on import under Node 20, which is what runs here. Move to 2.x together with the runtime.
import { existsSync } from 'node:fs';
import {
  type ConfigurationOptions,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  type RequestContext,
} from '@kubernetes/client-node';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Where the API server and credentials come from, in controller-runtime's order: an explicit
 * `KUBECONFIG` wins (an operator pointed us somewhere on purpose), then the in-cluster service account,
 * then `~/.kube/config`. A kubeconfig that points at plain `http://` must set `insecure-skip-tls-verify`,
 * or client-node refuses to talk to it.
 */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  // loadFromDefault reads KUBECONFIG (several files, merged) and ~/.kube/config from process.env itself.
  if (process.env.KUBECONFIG) {
    kc.loadFromDefault();
  } else if (process.env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (!kc.getCurrentCluster()) {
    throw new Error('no Kubernetes cluster configured: set KUBECONFIG or run inside a cluster');
  }
  return kc;
}

const fetchLibrary = new IsomorphicFetchHttpLibrary();

/**
 * Per-call options that abort the request when `signal` fires. The generated API clients have no timeout
 * of their own, and a lease call that hangs past the renew deadline must not keep a replica believing it
 * still leads. Done through the `httpApi` hook because it is typed the same for every client, unlike
 * call-time middleware whose declared and runtime shapes differ in 1.4.
 */
export function withSignal(signal: AbortSignal): ConfigurationOptions {
  return {
    httpApi: {
      send(request: RequestContext) {
        request.setSignal(signal);
        return fetchLibrary.send(request);
      },
    },
  };
}

/** The HTTP status of an error thrown by a generated client (ApiException) or a watch, if it has one. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** A short, single-line description of an API error, for logs (ApiException messages embed headers). */
export function describeError(err: unknown): string {
  const status = statusOf(err);
  if (status !== undefined) {
    const message = statusMessage((err as { body?: unknown }).body);
    return message ? `HTTP ${status}: ${message}` : `HTTP ${status}`;
  }
  if (err instanceof Error)
    return err.name === 'AbortError' ? 'request timed out or was aborted' : err.message;
  return String(err);
}

/** The `message` of a Kubernetes Status body; client-node 1.4 hands error bodies over as raw JSON text. */
function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.slice(0, 200) || undefined;
    }
  }
  if (typeof parsed === 'object' && parsed !== null && 'message' in parsed) return String(parsed.message);
  return undefined;
}
