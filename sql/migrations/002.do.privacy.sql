-- Privacy (SPEC §5), expand-only: new tables; nothing existing changes shape.

-- Data keys: random AES-256 keys, stored only wrapped (AES-256-GCM) by the master key, which never
-- enters the database. A new key each day (or on `intake keys rotate`); retention destroys keys older
-- than the window by erasing `wrapped`, which makes every copy of older ciphertext unreadable,
-- backups and queues included.
CREATE TABLE intake.data_keys (
  id           text        PRIMARY KEY,
  wrapped      bytea,                     -- iv || tag || wrapped key; NULL once destroyed
  created_at   timestamptz NOT NULL DEFAULT now(),
  destroyed_at timestamptz
);

-- Erasure tombstones: messages of an erased subject that were received before the erasure and are
-- still in flight are not stored when they arrive. Keyed by pseudonym, never by the IP itself.
CREATE TABLE intake.erasures (
  pseudonym bytea       PRIMARY KEY,
  erased_at timestamptz NOT NULL DEFAULT now()
);

-- Every reveal, export and erasure: who, what, which subject (pseudonym), when.
CREATE TABLE intake.audit_log (
  id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at        timestamptz NOT NULL DEFAULT now(),
  actor     text        NOT NULL,
  action    text        NOT NULL CHECK (action IN ('reveal', 'export', 'erase', 'rotate-key', 'destroy-keys')),
  subject   text,
  detail    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON intake.audit_log (at);

-- Least privilege, per process kind. The worker stores rows and needs no key material; the API
-- encrypts (reads and creates data keys) and serves privacy requests. Neither owns tables. Creating
-- roles needs CREATEROLE; where the migrator lacks it (CloudNativePG's owner), the roles come from the
-- cluster (spec.managed.roles). Their grants are in sql/grants.sql, re-applied by every migrate.
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['intake_api', 'intake_worker'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
EXCEPTION WHEN insufficient_privilege OR unique_violation OR duplicate_object THEN
  RAISE NOTICE 'roles not created: %', SQLERRM;
END $$;
