-- The partition functions are the migration owner's alone (docs/security.md): no role but the owner
-- runs DDL, and these two are DDL behind SECURITY DEFINER. `intake migrate` and `intake maintain` (the
-- hourly CronJob, logged in as the owner) keep partitions ahead and drop expired ones; a worker runs
-- them in process only where it logs in as the owner (`npm start`), and otherwise only reads the
-- catalog for intake_partitions_ahead. sql/grants.sql no longer grants them, and takes back any
-- earlier grant on every `intake migrate`; this revokes them at once for the roles that exist now.
-- Workers of the previous release that still call them during a rolling deploy get 42501, log it once
-- an hour and count it in intake_maintenance_failures_total{task="partitions"}.
REVOKE EXECUTE ON FUNCTION intake.ensure_partitions(integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION intake.drop_partitions_before(timestamptz) FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intake_worker') THEN
    REVOKE EXECUTE ON FUNCTION intake.ensure_partitions(integer, integer) FROM intake_worker;
    REVOKE EXECUTE ON FUNCTION intake.drop_partitions_before(timestamptz) FROM intake_worker;
  END IF;
END $$;
