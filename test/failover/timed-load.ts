import { Agent } from 'node:http';
import { postJson } from '../helpers/load.ts';

/** One request of a timed load run: when it was sent and answered, and what it got. */
export interface Answer {
  /** performance.now() when sent and when answered. */
  sentAt: number;
  answeredAt: number;
  /** HTTP status; 0 for a network error. */
  status: number;
  /** The problem code of a non-202 answer. */
  code?: string;
  /** The id of a 202, or the ids of an ACCEPTANCE_UNKNOWN. */
  ids: string[];
}

/**
 * Posts valid messages from `concurrency` keep-alive clients until stopped or `maxRequests` were sent
 * (bounded; loopback only), keeping every answer with its timing, so a fault test can say when
 * failures began and when requests succeeded again.
 */
export function startTimedLoad(
  url: string,
  opts: { concurrency: number; maxRequests: number; sender: string },
) {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const answers: Answer[] = [];
  let sent = 0;
  let stopped = false;
  const client = async (c: number) => {
    while (!stopped && sent < opts.maxRequests) {
      sent++;
      const sentAt = performance.now();
      const body = { ts: 1530228282, sender: opts.sender, message: { c, n: sent } };
      try {
        const res = await postJson(url, '/v1/messages', body, agent);
        const json = JSON.parse(res.body) as { id?: string; ids?: string[]; code?: string };
        answers.push({
          sentAt,
          answeredAt: performance.now(),
          status: res.status,
          ...(json.code === undefined ? {} : { code: json.code }),
          ids: json.id ? [json.id] : (json.ids ?? []),
        });
      } catch {
        answers.push({ sentAt, answeredAt: performance.now(), status: 0, ids: [] });
      }
      // A refused client backs off a little, as a real one would (Retry-After is 1 s).
      if (answers.at(-1)!.status !== 202) await new Promise((r) => setTimeout(r, 20));
    }
  };
  const running = Promise.all(Array.from({ length: opts.concurrency }, (_, c) => client(c)));
  return {
    answers,
    accepted: () => answers.filter((a) => a.status === 202).length,
    async stop(): Promise<Answer[]> {
      stopped = true;
      await running;
      agent.destroy();
      return answers;
    },
  };
}

/** What a fault did to the clients: failures, and how long until requests succeeded again. */
export interface Disruption {
  accepted: number;
  /** Answers by status (0: network error). */
  statuses: Record<string, number>;
  /** 503 answers, and those of them that were ACCEPTANCE_UNKNOWN. */
  unavailable: number;
  unknown: number;
  /** From `since` to the first failed answer (null: none failed). */
  firstFailureAfterMs: number | null;
  /** From the first failed answer to the first 202 of a request sent after it. */
  recoveryMs: number | null;
  /** From the first to the last failed answer. */
  failingForMs: number | null;
}

export function disruption(answers: Answer[], since: number): Disruption {
  const statuses: Record<string, number> = {};
  for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  const failed = answers.filter((a) => a.status !== 202).sort((a, b) => a.answeredAt - b.answeredAt);
  const first = failed[0];
  const last = failed.at(-1);
  let recovered: number | undefined;
  if (first)
    for (const a of answers)
      if (a.status === 202 && a.sentAt >= first.answeredAt)
        recovered = Math.min(recovered ?? Number.POSITIVE_INFINITY, a.answeredAt);
  const round = (ms: number | undefined) => (ms === undefined ? null : Math.round(ms));
  return {
    accepted: answers.filter((a) => a.status === 202).length,
    statuses,
    unavailable: answers.filter((a) => a.status === 503).length,
    unknown: answers.filter((a) => a.code === 'ACCEPTANCE_UNKNOWN').length,
    firstFailureAfterMs: round(first && first.answeredAt - since),
    recoveryMs: round(first && recovered !== undefined ? recovered - first.answeredAt : undefined),
    failingForMs: round(first && last && last.answeredAt - first.answeredAt),
  };
}
