-- The upload spool of a centre (docs/scale.md, "The upload spool"): a whole bundle is
-- written here once, durably, and answered "held" (202); a background applier takes
-- many held bundles per transaction, applies them and marks them applied in the same
-- transaction, so a bundle is applied exactly once whatever crashes when. A refused
-- bundle keeps its refusal (status, error, reason) for the uploader to learn; applied
-- and refused rows drop their bytes.
CREATE TABLE upload_spool (
    id bytea PRIMARY KEY,
    seq bigserial NOT NULL,
    state smallint NOT NULL DEFAULT 0,  -- 0 held, 1 applied, 2 refused
    data bytea,
    size integer NOT NULL,
    received timestamptz NOT NULL DEFAULT now(),
    status smallint,
    error text,
    reason text
);
CREATE INDEX upload_spool_held ON upload_spool (seq) WHERE state = 0;
