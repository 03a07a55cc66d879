import type { ConfigNeeds } from '../config.ts';
import { type CommandGroup, type CommandSpec, checks } from './command.ts';
import { announce, withSession } from './session.ts';

/**
 * `intake pii reveal|export|erase`: the operator's side of the privacy operations (docs/privacy.md).
 * Output is JSON on stdout; every action is written to the audit log as `cli:<INTAKE_ACTOR>`.
 */
/** The database and the PII keys; the queue, whose messages export and erase count too. */
const needs: ConfigNeeds = { database: true, piiKey: 'required', queue: true };

const ip = {
  name: 'ip',
  description: 'the data subject: a dotted-decimal IPv4 address',
  required: true,
  check: checks.ipv4,
};

const reveal: CommandSpec<ConfigNeeds> = {
  name: 'pii reveal',
  summary: 'print one stored message with its IP and personal fields in clear (audited)',
  description:
    'A value whose ciphertext was not made for this message and field (copied there from another row or ' +
    'field in the database, or altered) is printed as "not revealed", listed in `not_revealed`, and the ' +
    'command exits with status 1.',
  options: {},
  positionals: [
    {
      name: 'message-id',
      description: 'the id intake assigned (a UUIDv7)',
      required: true,
      check: checks.messageId,
    },
  ],
  needs,
  async run({ config, log, positionals }) {
    const id = positionals[0]!.toLowerCase();
    const { revealMessage } = await import('../privacy/subjects.ts');
    return withSession(config, log, async (s) => {
      const out = await revealMessage(s.pool, (await s.keys()).protector, id, s.actor);
      if (!out) {
        console.error(`intake pii reveal: no stored message ${id}`);
        return 1;
      }
      console.log(JSON.stringify(out, null, 2));
      if (out.not_revealed) {
        console.error(
          `intake pii reveal: ${out.not_revealed.join(', ')} not revealed: the ciphertext was not made for this message and field (moved or altered)`,
        );
        return 1;
      }
      return 0;
    });
  },
};

const exportCmd: CommandSpec<ConfigNeeds> = {
  name: 'pii export',
  summary:
    'print everything held about an IP: its stored messages, dead letters and queued messages (audited)',
  options: {},
  positionals: [ip],
  needs,
  async run({ config, log, positionals }) {
    const { exportSubject } = await import('../privacy/subjects.ts');
    return withSession(config, log, async (s) => {
      const queue = await s.queue();
      const out = await exportSubject(
        s.pool,
        queue.producer,
        (await s.keys()).protector,
        positionals[0]!,
        s.actor,
      );
      console.log(JSON.stringify(out, null, 2));
      return 0;
    });
  },
};

const erase: CommandSpec<ConfigNeeds> = {
  name: 'pii erase',
  summary: 'delete everything held about an IP, stored, dead-lettered and queued (audited)',
  description:
    'Deletes the subject’s stored messages, dead letters, queued messages and the Idempotency-Key records ' +
    'of its requests, and leaves a tombstone so that messages still on their way are never stored. Prints ' +
    'the counts erased.',
  options: { 'dry-run': { type: 'boolean', description: 'count what would be erased and change nothing' } },
  positionals: [ip],
  needs,
  async run({ config, log, positionals, values }) {
    const dryRun = values['dry-run'] === true;
    const subject = positionals[0]!;
    const { eraseSubject } = await import('../privacy/subjects.ts');
    const { countSubjectDeadLetters, subjectMessageIds } = await import('../store/subjects.ts');
    return withSession(config, log, async (s) => {
      const { protector } = await s.keys();
      const queue = await s.queue();
      const pseudonym = protector.pseudonym(subject);
      const held = {
        messages: (await subjectMessageIds(s.pool, pseudonym)).length,
        dead_letters: await countSubjectDeadLetters(s.pool, pseudonym),
        queued: await queue.producer.queuedForSubject(pseudonym),
      };
      announce(
        `erase everything held about ${subject}: ${held.messages} stored messages, ${held.dead_letters} dead letters, ${held.queued} queued`,
        dryRun,
      );
      if (dryRun) {
        console.log(JSON.stringify({ dry_run: true, would_erase: held }, null, 2));
        return 0;
      }
      const erased = await eraseSubject(s.pool, queue.producer, protector, subject, s.actor);
      console.log(JSON.stringify({ erased }, null, 2));
      return 0;
    });
  },
};

export const piiCommands: CommandGroup = {
  name: 'pii',
  summary: 'privacy operations on personal data, each written to the audit log',
  subcommands: [reveal, exportCmd, erase],
};
