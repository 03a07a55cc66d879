-- Expand-only: dead letters become something operators list, replay and discard (docs/runbooks.md,
-- "Dead letters"), newest first; and the audit log records those operations.
CREATE INDEX IF NOT EXISTS dead_letters_failed_idx ON intake.dead_letters (failed_at DESC, id DESC);
ALTER TABLE intake.audit_log DROP CONSTRAINT IF EXISTS audit_log_action_check;
ALTER TABLE intake.audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN
  ('reveal', 'export', 'erase', 'rotate-key', 'destroy-keys', 'replay-dead-letter', 'discard-dead-letter'));
