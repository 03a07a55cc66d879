-- Message status (GET /v1/messages/{id}/status, docs/contract.md): when a row was stored, and which
-- messages an erasure took.
--
-- stored_at: added without a default first, so rows stored before this migration say NULL (their time
-- of storing is not known) instead of the time of the migration; new rows get the time the worker's
-- transaction stored them. Neither step rewrites the table.
ALTER TABLE intake.messages ADD COLUMN IF NOT EXISTS stored_at timestamptz;
ALTER TABLE intake.messages ALTER COLUMN stored_at SET DEFAULT now();

-- Ids of messages a GDPR erasure deleted (stored, queued or dead-lettered) or the worker dropped for an
-- erasure tombstone. No personal data: the id, the sender (which the contract does not treat as
-- personal) and when. Pruned after the retention window by prune_erased_messages().
CREATE TABLE IF NOT EXISTS intake.erased_messages (
  id        uuid        PRIMARY KEY,
  sender    text        NOT NULL,
  erased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS erased_messages_erased_at_idx ON intake.erased_messages (erased_at);

-- Retention for the records above, bounded like drop_partitions_before (migration 007): only what is
-- older than intake.retention_policy's window, whoever calls it. Returns how many were deleted.
CREATE OR REPLACE FUNCTION intake.prune_erased_messages() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  keep integer;
  n integer;
BEGIN
  SELECT p.days INTO keep FROM intake.retention_policy p;
  keep := coalesce(keep, 30);
  DELETE FROM intake.erased_messages WHERE erased_at < now() - pg_catalog.make_interval(days => keep);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
REVOKE ALL ON FUNCTION intake.prune_erased_messages() FROM PUBLIC;
