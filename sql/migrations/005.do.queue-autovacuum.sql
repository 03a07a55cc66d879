-- Expand-only: the Postgres queue's table churns (each message is inserted, updated by its claim, then
-- deleted), so it is vacuumed after a fixed number of dead rows rather than a fifth of its size as
-- last analysed, which after a burst is the burst's size. Until vacuumed, every poll of an emptied
-- queue walks the dead index entries: measured 0.3 ms per empty claim fresh, 2.7-3.1 ms after a
-- 300,000-message burst, 0.3 ms again after VACUUM (docs/capacity-plan.md).
ALTER TABLE intake.queue SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_analyze_scale_factor = 0,
  autovacuum_analyze_threshold = 5000,
  autovacuum_vacuum_cost_delay = 0
);
