-- Blobs (docs/design.md, "Blobs"): one row per blob, one per chunk of at most
-- blob_chunk_bytes, in the database so that pg_dump and base backups hold them.
-- A blob is visible once complete is set, after its bytes were checked.
CREATE TABLE blobs (
    hash bytea PRIMARY KEY, size bigint NOT NULL, complete boolean NOT NULL,
    created bigint NOT NULL);
CREATE TABLE blob_chunks (
    hash bytea NOT NULL, pos bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (hash, pos));
