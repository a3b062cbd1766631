-- Format 3's streams (docs/design.md, "Landing format 3: the order", step 2): segments
-- are keyed by stream, (origin, collection, prefix, first_seq), and the outbox by own
-- stream, (collection, prefix, seq). Collection and prefix are bytea holding UTF-8, as
-- in the other tables, so that they order as bytes. A format-2 stream is the WHOLE
-- partition, ('', ''), which no format-3 partition is (a collection name is never
-- empty): the rows held stay there, and the defaults only serve this migration.
ALTER TABLE segments ADD COLUMN collection bytea NOT NULL DEFAULT '',
    ADD COLUMN prefix bytea NOT NULL DEFAULT '';
ALTER TABLE segments ALTER COLUMN collection DROP DEFAULT, ALTER COLUMN prefix DROP DEFAULT;
ALTER TABLE segments DROP CONSTRAINT segments_pkey,
    ADD PRIMARY KEY (origin, collection, prefix, first_seq);

ALTER TABLE outbox ADD COLUMN collection bytea NOT NULL DEFAULT '',
    ADD COLUMN prefix bytea NOT NULL DEFAULT '';
ALTER TABLE outbox ALTER COLUMN collection DROP DEFAULT, ALTER COLUMN prefix DROP DEFAULT;
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (collection, prefix, seq);
