-- Expand-only: the fingerprint (a digest of the request body) an Idempotency-Key was first used with, so a
-- reuse of the key with a different body is refused (422) instead of silently answering the first id.
-- NULL for keys stored by earlier versions: those are honoured without a body check until they expire.
ALTER TABLE intake.idempotency_keys ADD COLUMN IF NOT EXISTS fingerprint text;
