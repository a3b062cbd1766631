-- offsync PostgreSQL schema, version 1: the tables of the SQLite store, for a shared centre.
-- Collections and keys are bytea holding UTF-8, so that they order as bytes (like SQLite's
-- BINARY collation and offsync's spec) whatever the database's collation, and hold any
-- string a peer may send (PostgreSQL text cannot hold NUL).

CREATE TABLE meta (
    name text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- touched: the transaction that inserted the row or last changed its status; a replica
-- on a shared store follows it to learn what other processes added (Store.segments_changed).
CREATE TABLE segments (
    origin bytea NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    hash bytea NOT NULL,
    prev_hash bytea NOT NULL,
    data bytea NOT NULL,
    status text COLLATE "C" NOT NULL,
    touched xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (origin, first_seq)
);
CREATE INDEX segments_touched ON segments (touched);

CREATE TABLE outbox (
    seq bigint PRIMARY KEY,
    data bytea NOT NULL
);

CREATE TABLE changes (
    collection bytea NOT NULL,
    key bytea NOT NULL,
    origin bytea NOT NULL,
    seq bigint NOT NULL,
    hlc bigint NOT NULL,
    op smallint NOT NULL,
    fields bytea,
    parents bytea,
    PRIMARY KEY (collection, key, origin, seq)
);

-- heads = '' marks a placeholder row that a transaction inserted only to lock a new
-- record (Store.lock_records); it is replaced before that transaction commits.
CREATE TABLE records (
    collection bytea NOT NULL,
    key bytea NOT NULL,
    fields bytea,
    heads bytea NOT NULL,
    conflict boolean NOT NULL,
    PRIMARY KEY (collection, key)
);
CREATE INDEX records_conflict ON records (collection, key) WHERE conflict;

-- created is a peer's HLC: any unsigned 64-bit value.
CREATE TABLE peers (
    peer bytea PRIMARY KEY,
    created numeric(20, 0) NOT NULL,
    knowledge bytea NOT NULL,
    receipt bytea NOT NULL
);
