-- intake schema, version 1. Migrations are expand/contract: a later version may add, never break what
-- the previous release reads or writes, so old and new pods run side by side during a rolling deploy.
CREATE SCHEMA IF NOT EXISTS intake;

-- Stored messages, partitioned by day of receipt so that retention is a partition drop and the table can
-- grow to billions of rows. received_at is the timestamp inside the UUIDv7 id, so a redelivered message
-- always lands in the same partition and the (id, received_at) primary key makes inserts idempotent.
CREATE TABLE intake.messages (
  id            uuid        NOT NULL,
  received_at   timestamptz NOT NULL,
  ts            bigint      NOT NULL,
  sender        text        NOT NULL,
  message       jsonb       NOT NULL,
  priority      integer,
  ip_pseudonym  bytea,          -- HMAC-SHA-256(pseudonym key, ip): groups and finds a subject's rows
  ip_ciphertext bytea,          -- AES-256-GCM(data key, ip): iv || tag || ciphertext
  ip_key_id     text,           -- which data key; destroying it makes the ciphertext unreadable
  PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

-- Query API: newest first, optionally by sender, keyset-paginated on (received_at, id).
CREATE INDEX messages_received_idx ON intake.messages (received_at DESC, id DESC);
CREATE INDEX messages_sender_idx ON intake.messages (sender, received_at DESC, id DESC);
-- GDPR subject look-ups (export, erasure).
CREATE INDEX messages_ip_pseudonym_idx ON intake.messages (ip_pseudonym) WHERE ip_pseudonym IS NOT NULL;

-- The embedded default queue. Rows are claimed with FOR UPDATE SKIP LOCKED and deleted in the same
-- transaction that stores them, so a message is either still here or in intake.messages, never neither.
CREATE TABLE intake.queue (
  id          uuid        PRIMARY KEY,
  payload     jsonb       NOT NULL,
  attempts    integer     NOT NULL DEFAULT 0,
  visible_at  timestamptz NOT NULL DEFAULT now(),
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  last_error  text
);
CREATE INDEX queue_visible_idx ON intake.queue (visible_at, id);

-- Idempotency-Key → id, scoped by client. Rows older than the idempotency window are pruned.
CREATE TABLE intake.idempotency_keys (
  key        text        PRIMARY KEY,
  message_id uuid        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_idx ON intake.idempotency_keys (created_at);

-- Messages that could not be stored after bounded retries, with the reason. They never block the rest.
CREATE TABLE intake.dead_letters (
  id        uuid        PRIMARY KEY,
  payload   jsonb       NOT NULL,
  reason    text        NOT NULL,
  attempts  integer     NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now()
);

-- Creates the daily partitions from days_back before today to days_ahead after it (UTC). Serialised by
-- an advisory lock because API and worker replicas all call it at start-up.
CREATE FUNCTION intake.ensure_partitions(days_back integer, days_ahead integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, intake AS $$
DECLARE
  d date;
  created integer := 0;
  part text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('intake.ensure_partitions'));
  FOR d IN SELECT generate_series(
      (now() AT TIME ZONE 'UTC')::date - days_back,
      (now() AT TIME ZONE 'UTC')::date + days_ahead, interval '1 day')::date
  LOOP
    part := 'messages_' || to_char(d, 'YYYYMMDD');
    IF to_regclass('intake.' || part) IS NULL THEN
      EXECUTE format('CREATE TABLE intake.%I PARTITION OF intake.messages FOR VALUES FROM (%L) TO (%L)',
        part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END $$;

-- Retention: drops the daily partitions that end before the cutoff. Returns the names dropped.
CREATE FUNCTION intake.drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, intake AS $$
DECLARE
  r record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('intake.ensure_partitions'));
  FOR r IN
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = 'intake' AND p.relname = 'messages' AND c.relname ~ '^messages_\d{8}$'
      AND (to_date(substr(c.relname, 10), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
  LOOP
    EXECUTE format('DROP TABLE intake.%I', r.relname);
    RETURN NEXT r.relname;
  END LOOP;
END $$;

SELECT intake.ensure_partitions(1, 7);
