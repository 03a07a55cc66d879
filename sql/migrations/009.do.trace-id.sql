-- Expand-only: the W3C trace id each message was published under (docs/tracing.md), so a row can be
-- followed back to the request that sent it. NULL for rows stored before this migration and for
-- messages that came without trace context (another producer, an old envelope). A nullable column
-- without a default is a catalog change only: no partition is rewritten.
--
-- text (32 lowercase hex digits), not bytea (16 bytes): the value is the one the logs, the `traceparent`
-- response header and tracing back ends show, so an operator pastes it into a query as it is; the 16
-- bytes more per row are small next to the row itself. Not indexed: looking a trace up is rare, and an
-- index would cost every insert.
ALTER TABLE intake.messages ADD COLUMN trace_id text;
