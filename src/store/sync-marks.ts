import type pg from 'pg';

/**
 * Makes the caller's transaction write WAL, so its COMMIT waits for the synchronous standby like any
 * other write (migration 011). For a transaction that would otherwise write nothing: a COMMIT without
 * WAL returns at once, confirming nothing about rows an earlier, locally committed transaction left
 * on the primary. The standby receives WAL in order, so once it has this COMMIT it has those rows.
 * One row, updated without a WHERE (the worker may not read it): transactions that mark it queue on
 * its row lock until they commit, which is why only batches that wrote nothing else use it.
 */
export async function markForReplication(tx: pg.ClientBase): Promise<void> {
  await tx.query('UPDATE intake.sync_marks SET marked_at = now()');
}
