-- Wire format 2: segments are stored as their origin sealed them (columnar, zstd
-- compressed). A store that already holds format-1 segments cannot be read by this
-- offsync: refuse it rather than fail later on its first segment.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM segments) THEN
        RAISE EXCEPTION 'this offsync store holds changes in wire format 1, which offsync (format 2) cannot read; sync it to a peer with the offsync that wrote it, or start a new store and sync it back from peers';
    END IF;
END
$$;
