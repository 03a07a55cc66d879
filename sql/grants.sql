-- Re-applied by every `intake migrate` after the versioned migrations (idempotent): roles created
-- after a migration ran (CloudNativePG's managed roles, an operator's CREATE ROLE) still get their
-- grants. Least privilege: row access only; no role but the owner can change the schema.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intake_worker') THEN
    GRANT USAGE ON SCHEMA intake TO intake_worker;
    GRANT SELECT ON intake.schema_version TO intake_worker;
    GRANT SELECT, INSERT ON intake.messages TO intake_worker;
    GRANT SELECT, INSERT, UPDATE, DELETE ON intake.queue TO intake_worker;
    GRANT SELECT, INSERT ON intake.dead_letters TO intake_worker;
    GRANT SELECT ON intake.erasures TO intake_worker;
    GRANT EXECUTE ON FUNCTION intake.ensure_partitions(integer, integer) TO intake_worker;
    GRANT EXECUTE ON FUNCTION intake.drop_partitions_before(timestamptz) TO intake_worker;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intake_api') THEN
    GRANT USAGE ON SCHEMA intake TO intake_api;
    GRANT SELECT ON intake.schema_version TO intake_api;
    GRANT SELECT, DELETE ON intake.messages TO intake_api;
    GRANT SELECT, INSERT, DELETE ON intake.queue, intake.idempotency_keys TO intake_api;
    GRANT SELECT, DELETE ON intake.dead_letters TO intake_api;
    GRANT SELECT, INSERT, UPDATE ON intake.data_keys, intake.erasures TO intake_api;
    GRANT INSERT ON intake.audit_log TO intake_api;
  END IF;
END $$;
