-- The index of blob references (docs/design.md, "Blobs"): one row per distinct
-- reference of a visible record, written with the record, so that missing_blobs and
-- collect_blobs read it instead of every record. held says whether the blob is here
-- whole; the partial index holds only the references still missing.
CREATE TABLE blob_refs (
    collection bytea NOT NULL, key bytea NOT NULL, hash bytea NOT NULL, size bigint NOT NULL,
    media_type text NOT NULL, held boolean NOT NULL,
    PRIMARY KEY (collection, key, hash, size, media_type));
CREATE INDEX blob_refs_hash ON blob_refs (hash);
CREATE INDEX blob_refs_missing ON blob_refs (collection, key) WHERE NOT held;
-- Records already holding references (the msgpack of "$blob" in their fields) are
-- indexed by the first store opened after this step, in Python (SQL cannot read
-- msgpack): this row says that is still to do.
INSERT INTO meta (name, value)
    SELECT 'blob_refs_backfill', '\x01'::bytea
    WHERE EXISTS (SELECT 1 FROM records WHERE position('\xa524626c6f62'::bytea IN fields) > 0);
