import { chmod, chown, mkdir, stat } from 'node:fs/promises';
import type { Logger } from './logger.ts';

/**
 * Makes `dir` (INTAKE_DATA_DIR: the embedded PostgreSQL cluster and its socket, the development master
 * key) private to this OS user, so that another local user can neither list nor enter it: created
 * 0700, or tightened to that when it exists with bits for others (earlier versions made it 0755).
 *
 * `group`: when intake runs as root, PostgreSQL runs as an unprivileged user, which must still reach
 * its own directory inside: that user's group may traverse (0710, owner root), nobody else.
 *
 * A directory others share (sticky or world-writable, such as /tmp) or one owned by another user is
 * refused: tightening it would break them, and leaving it open would not be private.
 */
export async function makePrivateDir(dir: string, log: Logger, group?: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  const uid = process.getuid?.();
  if (uid === undefined) return; // Windows: no POSIX modes to set
  const shared = (st.mode & 0o1000) !== 0 || (st.mode & 0o002) !== 0;
  if (shared || st.uid !== uid) {
    throw new Error(
      `INTAKE_DATA_DIR=${dir} is ${shared ? 'shared with other users' : `owned by uid ${st.uid}`}: ` +
        'point INTAKE_DATA_DIR at a directory of its own (it holds the database and the development key)',
    );
  }
  if (group !== undefined && st.gid !== group) await chown(dir, uid, group);
  const was = st.mode & 0o777;
  // Private: nothing for others, and at most traversal for the group (which may be PostgreSQL's).
  const isPrivate = (was & 0o067) === 0 && (group === undefined || (was & 0o010) !== 0);
  if (!isPrivate) {
    const mode = group === undefined ? 0o700 : 0o710;
    await chmod(dir, mode);
    log.info({ dir, was: was.toString(8), now: mode.toString(8) }, 'data directory made private');
  }
}
