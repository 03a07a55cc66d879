-- Privacy keys and Idempotency-Key records (docs/privacy.md), expand-only: old and new versions run side
-- by side during a deploy.

-- Idempotency-Keys: the body's fingerprint becomes a keyed MAC (a plain SHA-256 of a body gave its IP back
-- to anyone who tries the 2^32 addresses), in a new column so that an older version reads NULL there and
-- honours the key without a body check instead of refusing a retry. The subject's IP pseudonym is kept
-- with the record, so erasure finds and deletes it.
ALTER TABLE intake.idempotency_keys ADD COLUMN IF NOT EXISTS fingerprint_mac text;
ALTER TABLE intake.idempotency_keys ADD COLUMN IF NOT EXISTS ip_pseudonym bytea;
CREATE INDEX IF NOT EXISTS idempotency_keys_subject_idx ON intake.idempotency_keys (ip_pseudonym)
  WHERE ip_pseudonym IS NOT NULL;
-- The unkeyed digests written so far are the leak itself: gone now (their keys still answer retries, as
-- keys from before migration 003 did). An older API still running during the deploy may write more;
-- the newer API's hourly prune clears those too.
UPDATE intake.idempotency_keys SET fingerprint = NULL WHERE fingerprint IS NOT NULL;
CREATE INDEX IF NOT EXISTS idempotency_keys_unkeyed_idx ON intake.idempotency_keys (key)
  WHERE fingerprint IS NOT NULL;

-- Data keys: which key-encryption key (master key) wraps each one, so a master key rotation can tell what
-- is left to re-wrap; NULL for keys wrapped before this column existed (the master key of that time).
ALTER TABLE intake.data_keys ADD COLUMN IF NOT EXISTS kek_id text;
-- Every API process asks for the newest key every few seconds (INTAKE_DATA_KEY_REFRESH_SECONDS).
CREATE INDEX IF NOT EXISTS data_keys_newest_idx ON intake.data_keys (created_at DESC, id DESC)
  WHERE wrapped IS NOT NULL;

-- Long-lived secrets that must survive a master key rotation, stored wrapped like the data keys: the
-- pseudonym key (HMAC of IPs; a new one would orphan every stored pseudonym from its subject). Written by
-- the first API process of this version as the key it derived from the master key, so existing
-- pseudonyms keep working; re-wrapped by `intake keys rotate-master`.
CREATE TABLE IF NOT EXISTS intake.keyring (
  name         text        PRIMARY KEY,
  wrapped      bytea       NOT NULL,   -- iv || tag || wrapped key, AES-256-GCM under the KEK
  kek_id       text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  rewrapped_at timestamptz
);
