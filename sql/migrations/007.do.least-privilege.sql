-- Least privilege for the schema's functions and DDL (docs/security.md). Expand-only: the functions keep
-- their signatures, so workers of the previous release go on calling them during a rolling deploy.
--
-- The retention window, as the migration owner last set it (`intake migrate` writes INTAKE_RETENTION_DAYS
-- here). One row; no other role may read or change it, so a worker can drop only what the owner's
-- policy already says has expired.
CREATE TABLE IF NOT EXISTS intake.retention_policy (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  days       integer     NOT NULL CHECK (days BETWEEN 1 AND 3650),
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO intake.retention_policy (days) VALUES (30) ON CONFLICT DO NOTHING;

-- As in 001, bounded: at most 7 days back and 31 ahead (39 tables), whoever calls it. search_path ends
-- with pg_temp, so a caller's temporary table cannot stand in for a catalog or intake table (PostgreSQL
-- manual, "Writing SECURITY DEFINER Functions Safely"); every name below is qualified anyway.
CREATE OR REPLACE FUNCTION intake.ensure_partitions(days_back integer, days_ahead integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d date;
  created integer := 0;
  part text;
BEGIN
  IF days_back IS NULL OR days_ahead IS NULL OR days_back NOT BETWEEN 0 AND 7
     OR days_ahead NOT BETWEEN 0 AND 31 THEN
    RAISE EXCEPTION 'permission denied to create partitions % days back and % ahead', days_back, days_ahead
      USING ERRCODE = 'insufficient_privilege', HINT = 'at most 7 days back and 31 ahead';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('intake.ensure_partitions'));
  FOR d IN SELECT pg_catalog.generate_series(
      (now() AT TIME ZONE 'UTC')::date - days_back,
      (now() AT TIME ZONE 'UTC')::date + days_ahead, interval '1 day')::date
  LOOP
    part := 'messages_' || pg_catalog.to_char(d, 'YYYYMMDD');
    IF pg_catalog.to_regclass('intake.' || part) IS NULL THEN
      EXECUTE pg_catalog.format(
        'CREATE TABLE intake.%I PARTITION OF intake.messages FOR VALUES FROM (%L) TO (%L)',
        part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END $$;

-- Retention: drops the daily partitions that end before the cut-off, which may not lie inside the
-- retention window of intake.retention_policy (so never today's partition, nor any newer than the
-- window allows), whatever the caller asks.
CREATE OR REPLACE FUNCTION intake.drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  keep integer;
BEGIN
  SELECT p.days INTO keep FROM intake.retention_policy p;
  keep := coalesce(keep, 30);
  IF cutoff IS NULL OR cutoff > now() - pg_catalog.make_interval(days => keep) THEN
    RAISE EXCEPTION 'permission denied to drop partitions ending after %: the retention window is % days',
      cutoff, keep
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'the window is INTAKE_RETENTION_DAYS as `intake migrate` last applied it';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('intake.ensure_partitions'));
  FOR r IN
    SELECT c.relname FROM pg_catalog.pg_inherits i
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'intake.messages'::pg_catalog.regclass AND c.relname ~ '^messages_\d{8}$'
      AND (pg_catalog.to_date(pg_catalog.substr(c.relname, 10), 'YYYYMMDD') + 1)::timestamp
          AT TIME ZONE 'UTC' <= cutoff
  LOOP
    EXECUTE pg_catalog.format('DROP TABLE intake.%I', r.relname);
    RETURN NEXT r.relname;
  END LOOP;
END $$;

-- Functions are executable by PUBLIC unless revoked: sql/grants.sql revokes every function of the schema
-- and grants each to the role that calls it; functions this owner creates later start revoked.
ALTER DEFAULT PRIVILEGES IN SCHEMA intake REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
