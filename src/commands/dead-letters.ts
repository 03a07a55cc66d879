import type { ConfigNeeds } from '../config.ts';
import type { ReplayOptions } from '../ingest/replay.ts';
import type { DeadLetter } from '../store/dead-letters.ts';
import { type CommandGroup, type CommandSpec, checks, type Values } from './command.ts';
import { announce, type Session, withSession } from './session.ts';

/**
 * `intake dead-letters list|show|replay|discard`: the dead-letter queue from a shell, on the database
 * directly, through the same functions as the admin API (/v1/dead-letters): a replay goes back on the
 * queue under its original id and is audited, a discard is audited; the actor is `cli:<INTAKE_ACTOR>`.
 */
const ids = {
  name: 'id',
  description: 'message ids of dead letters (UUIDv7), one or more',
  required: false,
  variadic: true,
  check: checks.messageId,
};
const all = {
  type: 'boolean' as const,
  description: 'every dead letter (instead of ids), or every one the filters match',
};
/** RFC 3339 or Unix seconds, as the admin API takes them (http/routes/cursor.ts). */
const time = (v: string) => {
  const d = /^\d{1,12}$/.test(v)
    ? new Date(Number(v) * 1000)
    : /^\d/.test(v)
      ? new Date(v)
      : new Date(Number.NaN);
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() > 9999
    ? `not a time: ${v} (expected RFC 3339, e.g. 2026-12-01T00:00:00Z, or Unix seconds)`
    : undefined;
};
const text = (what: string) => (v: string) =>
  v.length === 0 || v.length > 256 ? `${what}: 1 to 256 characters` : undefined;
/** The same filters as GET /v1/dead-letters. */
const filters = {
  sender: {
    type: 'string' as const,
    value: 'SENDER',
    description: 'only this sender',
    check: text('a sender'),
  },
  reason: {
    type: 'string' as const,
    value: 'TEXT',
    description: 'only reasons containing this text (case-insensitive)',
    check: text('a reason'),
  },
  since: {
    type: 'string' as const,
    value: 'TIME',
    description: 'failed at or after (RFC 3339 or Unix seconds)',
    check: time,
  },
  until: {
    type: 'string' as const,
    value: 'TIME',
    description: 'failed before (RFC 3339 or Unix seconds)',
    check: time,
  },
};
const FILTERS = Object.keys(filters) as Array<keyof typeof filters>;
const filterOf = (values: Values) => ({
  ...(typeof values.sender === 'string' ? { sender: values.sender } : {}),
  ...(typeof values.reason === 'string' ? { reason: values.reason } : {}),
  ...(typeof values.since === 'string' ? { since: toDate(values.since) } : {}),
  ...(typeof values.until === 'string' ? { until: toDate(values.until) } : {}),
});
const toDate = (v: string) => (/^\d{1,12}$/.test(v) ? new Date(Number(v) * 1000) : new Date(v));
const dryRun = { type: 'boolean' as const, description: 'say what would be done and change nothing' };
const idsOrAll = (values: Values, positionals: string[]) => {
  const selecting = values.all === true || FILTERS.some((f) => values[f] !== undefined);
  if (selecting && positionals.length) return 'give ids, or --all and filters, not both';
  if (!selecting && !positionals.length)
    return 'missing <id…> (or --all, --sender, --reason, --since, --until)';
  return undefined;
};

/** The database; the queue, where a replay publishes. */
const needs: ConfigNeeds = { database: true, queue: true };

/** Page size when --all walks the table. */
const PAGE = 1000;

/** The dead letters named (those that exist), or every one when --all; plus the ids not found. */
async function select(s: Session, values: Values, positionals: string[]) {
  const { getDeadLetter, listDeadLetters } = await import('../store/dead-letters.ts');
  if (!positionals.length) {
    const found: DeadLetter[] = [];
    for (;;) {
      const last = found[found.length - 1];
      const page = await listDeadLetters(s.pool, {
        ...filterOf(values),
        limit: PAGE,
        ...(last ? { after: { failedAt: last.failed_at, id: last.id } } : {}),
      });
      found.push(...page);
      if (page.length < PAGE) return { found, missing: [] as string[] };
    }
  }
  const found: DeadLetter[] = [];
  const missing: string[] = [];
  for (const id of new Set(positionals.map((p) => p.toLowerCase()))) {
    const d = await getDeadLetter(s.pool, id);
    if (d) found.push(d);
    else missing.push(id);
  }
  return { found, missing };
}

const list: CommandSpec<ConfigNeeds> = {
  name: 'dead-letters list',
  summary: 'list dead letters, newest first: id, failed at, attempts, sender, reason',
  options: {
    limit: {
      type: 'string',
      value: 'N',
      description: 'at most N (default 100)',
      check: checks.int(1, 100_000),
    },
    ...filters,
    json: {
      type: 'boolean',
      description: 'one JSON object per line: id, sender, failed_at, attempts, reason',
    },
  },
  positionals: [],
  needs,
  async run({ config, log, values }) {
    const { listDeadLetters } = await import('../store/dead-letters.ts');
    return withSession(config, log, async (s) => {
      const rows = await listDeadLetters(s.pool, { ...filterOf(values), limit: Number(values.limit ?? 100) });
      for (const d of rows) {
        if (values.json)
          console.log(
            JSON.stringify({
              id: d.id,
              sender: d.payload.sender,
              failed_at: d.failed_at,
              attempts: d.attempts,
              reason: d.reason,
            }),
          );
        else console.log(`${d.id}  ${d.failed_at}  ${d.attempts}×  ${d.payload.sender}  ${d.reason}`);
      }
      if (!values.json)
        console.error(
          `${rows.length} dead letters${rows.length === Number(values.limit ?? 100) ? ' (more may exist: --limit)' : ''}`,
        );
      return 0;
    });
  },
};

const show: CommandSpec<ConfigNeeds> = {
  name: 'dead-letters show',
  summary: 'one dead letter as the admin API shows it (personal data redacted), with why it failed',
  options: {},
  positionals: [
    { name: 'id', description: 'the message id of a dead letter', required: true, check: checks.messageId },
  ],
  needs,
  async run({ config, log, positionals }) {
    const { deadLetterView, getDeadLetter } = await import('../store/dead-letters.ts');
    return withSession(config, log, async (s) => {
      const id = positionals[0]!.toLowerCase();
      const d = await getDeadLetter(s.pool, id);
      if (!d) {
        console.error(`intake dead-letters show: no dead letter ${id} (replayed or discarded already?)`);
        return 1;
      }
      console.log(JSON.stringify(deadLetterView(d), null, 2));
      return 0;
    });
  },
};

function operation(kind: 'replay' | 'discard'): CommandSpec<ConfigNeeds> {
  return {
    name: `dead-letters ${kind}`,
    summary:
      kind === 'replay'
        ? 'put dead letters back on the queue under their original ids (audited)'
        : 'delete dead letters for good (audited)',
    options: { all, ...filters, 'dry-run': dryRun },
    positionals: [ids],
    needs,
    validate: idsOrAll,
    async run({ config, log, values, positionals }) {
      const dry = values['dry-run'] === true;
      const { discardDeadLetters, replayDeadLetters } = await import('../ingest/replay.ts');
      return withSession(config, log, async (s) => {
        const { found, missing } = await select(s, values, positionals);
        for (const id of missing)
          console.error(`intake dead-letters ${kind}: no dead letter ${id} (replayed or discarded already?)`);
        announce(
          `${kind} ${found.length} dead letters${found.length ? `: ${found.map((d) => d.id).join(', ')}` : ''}`,
          dry,
        );
        if (dry) {
          console.log(JSON.stringify({ dry_run: true, [`would_${kind}`]: found.map((d) => d.id) }));
          return missing.length ? 1 : 0;
        }
        const opts: ReplayOptions = {
          db: s.pool,
          // A discard never publishes: only a replay opens the queue.
          queue: kind === 'replay' ? (await s.queue()).producer : (undefined as never),
          publishTimeoutMs: config.publishTimeoutMs,
        };
        const done: string[] = [];
        for (let i = 0; i < found.length; i += PAGE) {
          const chunk = found.slice(i, i + PAGE);
          done.push(
            ...(kind === 'replay'
              ? await replayDeadLetters(opts, chunk, s.actor)
              : await discardDeadLetters(
                  opts,
                  chunk.map((d) => d.id),
                  s.actor,
                )),
          );
        }
        console.log(JSON.stringify({ [kind === 'replay' ? 'replayed' : 'discarded']: done }));
        return missing.length ? 1 : 0;
      });
    },
  };
}

export const deadLetterCommands: CommandGroup = {
  name: 'dead-letters',
  summary: 'list, show, replay or discard messages that could not be stored',
  subcommands: [list, show, operation('replay'), operation('discard')],
};
