-- Re-applied by every `intake migrate` after the versioned migrations (idempotent, in one transaction):
-- roles created after a migration ran (CloudNativePG's managed roles, an operator's CREATE ROLE) still
-- get their grants, and a grant this file no longer lists is taken back. Least privilege (docs/security.md):
-- row access only, no DDL, and no function of the schema: the partition functions are the owner's
-- (migration 010). test/security/db-roles.test.ts holds every role to this list.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA intake FROM PUBLIC;
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['intake_api', 'intake_worker'] LOOP
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA intake FROM %I', r);
      EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA intake FROM %I', r);
    END IF;
  END LOOP;

  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intake_worker') THEN
    GRANT USAGE ON SCHEMA intake TO intake_worker;
    GRANT SELECT ON intake.schema_version TO intake_worker;
    GRANT SELECT, INSERT ON intake.messages TO intake_worker;
    GRANT SELECT, INSERT, UPDATE, DELETE ON intake.queue TO intake_worker;
    GRANT SELECT, INSERT ON intake.dead_letters TO intake_worker;
    GRANT SELECT ON intake.erasures TO intake_worker;
    -- Records the ids of messages it drops for an erasure tombstone (message status); never reads them.
    GRANT INSERT ON intake.erased_messages TO intake_worker;
    -- UPDATE without SELECT: the worker's one-row write that makes a COMMIT wait for the synchronous
    -- standby (store/sync-marks.ts, migration 011); it can neither read nor add rows.
    GRANT UPDATE (marked_at) ON intake.sync_marks TO intake_worker;
    -- No EXECUTE on intake.ensure_partitions / drop_partitions_before: partition DDL is the owner's
    -- alone (`intake migrate`, `intake maintain`; migration 010). The worker only reads the catalog.
    -- Retention of the erased-message records, bounded inside the function (migration 008).
    GRANT EXECUTE ON FUNCTION intake.prune_erased_messages() TO intake_worker;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intake_api') THEN
    GRANT USAGE ON SCHEMA intake TO intake_api;
    GRANT SELECT ON intake.schema_version TO intake_api;
    -- DELETE on messages, queue and dead letters: erasure, dead-letter discard and retention run as the API.
    GRANT SELECT, DELETE ON intake.messages TO intake_api;
    GRANT SELECT, INSERT, DELETE ON intake.queue, intake.idempotency_keys TO intake_api;
    GRANT SELECT, DELETE ON intake.dead_letters TO intake_api;
    GRANT SELECT, INSERT, UPDATE ON intake.data_keys, intake.erasures TO intake_api;
    GRANT SELECT, INSERT ON intake.keyring TO intake_api;
    -- `intake keys rotate-master`, run from an API pod, re-wraps the pseudonym key (never deletes it).
    GRANT UPDATE (wrapped, kek_id, rewrapped_at) ON intake.keyring TO intake_api;
    -- The hourly prune clears unkeyed fingerprints an older API wrote during a deploy (migration 006).
    GRANT UPDATE (fingerprint) ON intake.idempotency_keys TO intake_api;
    GRANT INSERT ON intake.audit_log TO intake_api;
    -- Erasure records the ids it deletes; the status route reads them (migration 008).
    GRANT SELECT, INSERT ON intake.erased_messages TO intake_api;
  END IF;
END $$;

-- Where intake owns the database (or migrates as a superuser): nobody else creates objects in schema
-- public (PostgreSQL 15 made that the default; older clusters and upgraded databases still allow it),
-- and only the worker, which stages batches in a temporary table (store/messages.ts), may create
-- temporary tables. Elsewhere these belong to the database's owner, and are left to them.
DO $$
BEGIN
  IF pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE') THEN
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intake_worker') THEN
      EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO intake_worker', current_database());
    END IF;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'database privileges left as they are: %', SQLERRM;
END $$;
