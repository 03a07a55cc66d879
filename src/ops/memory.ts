import { getHeapStatistics } from 'node:v8';
import type { Logger } from './logger.ts';

/**
 * The heap limit should sit below the container's memory limit (deploy/k8s sets
 * NODE_OPTIONS=--max-old-space-size to ~75 % of it), so a leak ends in a V8 heap-out-of-memory with a
 * stack and, with --heapsnapshot-near-heap-limit, a snapshot, rather than a silent kernel OOM kill.
 * Logged at start so a wrong setting is visible in the first lines of the pod's log.
 */
export function checkHeapLimit(log: Logger): { heapLimit: number; containerLimit: number | undefined } {
  const heapLimit = getHeapStatistics().heap_size_limit;
  const constrained = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  // constrainedMemory() is 0 or a huge number when there is no cgroup limit.
  const containerLimit = constrained && constrained < 2 ** 50 ? constrained : undefined;
  const mib = (n: number) => Math.round(n / 1048576);
  if (containerLimit && heapLimit > containerLimit * 0.9) {
    log.warn(
      { heapLimitMiB: mib(heapLimit), containerLimitMiB: mib(containerLimit) },
      'heap limit is close to or above the container memory limit: set NODE_OPTIONS=--max-old-space-size to ~75 % of the limit',
    );
  } else {
    log.info(
      { heapLimitMiB: mib(heapLimit), containerLimitMiB: containerLimit ? mib(containerLimit) : null },
      'memory limits',
    );
  }
  return { heapLimit, containerLimit };
}
