"""Wire format 3, built beside format 2 (docs/spec-v3.md).

Partitions and streams (``offsync.scope``); the column codec with op, schema, author
and a per-segment secret (``columns``, and ``content`` for the field shapes and their
columns); zstd frames (``frame``); segments with a commitment that makes erasure
verifiable, and their redacted form (``segment``); stream-keyed knowledge
(``knowledge``); partial receipts (``receipt``); bundles of version 3 (``bundle``);
attestation tokens of version 2 (``attest``). These modules replace the format-2 ones
once the replica speaks format 3; until then nothing else in offsync uses them. Like
the rest of the core they are sans-IO.
"""
