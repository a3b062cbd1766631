-- Single-use values of the HTTP server (its challenges, docs/http.md): recorded here,
-- not in one worker's memory, so a captured signed request is accepted once by all the
-- workers of a centre. Expired rows no longer count and are swept out by the workers.
CREATE TABLE http_nonces (
    nonce bytea PRIMARY KEY,
    expires bigint NOT NULL
);
CREATE INDEX http_nonces_expires ON http_nonces (expires);
