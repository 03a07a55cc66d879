-- One row the worker updates in a batch's transaction when that transaction would write nothing else
-- (a redelivered batch whose rows are all there already: ON CONFLICT DO NOTHING writes no WAL). A COMMIT
-- that wrote no WAL does not wait for the synchronous standby, so without this the worker would
-- acknowledge rows that may exist only on the primary (committed locally by an earlier COMMIT whose
-- wait for the standby was cancelled). With it, that COMMIT waits until the standby has all WAL up to
-- it, those rows included (docs/production.md#postgresql-failover-and-synchronous-replication).
-- Expand-only: older workers ignore it. sql/grants.sql gives intake_worker UPDATE on it and nothing else.
CREATE TABLE IF NOT EXISTS intake.sync_marks (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  marked_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO intake.sync_marks DEFAULT VALUES ON CONFLICT DO NOTHING;
