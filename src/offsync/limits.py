"""Named limits on untrusted input.

Every decoder of bytes that came from elsewhere checks its input against one of these
before it allocates or recurses. The defaults are part of the spec (docs/spec.md,
"Limits"); a replica may be opened with tighter or looser ones.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    #: Whole bundle as it travels (framing + header + body + signature).
    max_bundle_bytes: int = 64 * MiB
    #: The msgpack header of a bundle.
    max_header_bytes: int = 4 * MiB
    #: The decompressed changes of one segment; checked against the zstd frame's
    #: declared size before anything is allocated.
    max_block_bytes: int = 64 * MiB
    #: zstd window size a decoder accepts (bounds decoder memory).
    max_window_bytes: int = 8 * MiB
    #: Segments in one bundle.
    max_segments: int = 100_000
    #: Changes in one segment.
    max_segment_changes: int = 100_000
    #: The encoded fields of one change.
    max_fields_bytes: int = 1 * MiB
    #: Causal parents listed by one change.
    max_parents: int = 64
    #: Collection name, in UTF-8 bytes.
    max_collection_bytes: int = 64
    #: Record key, in UTF-8 bytes.
    max_key_bytes: int = 512
    #: Origins named in one knowledge statement.
    max_origins: int = 1_000_000
    #: Intervals per origin (format 2) or per stream (format 3) in one knowledge
    #: statement.
    max_intervals: int = 100_000
    #: Streams (origin, partition) named in one knowledge statement (format 3). A
    #: centre holds some 300 000; a statement is also bounded by ``max_header_bytes``.
    max_streams: int = 1_000_000
    #: Sites a bundle header says its sender relays for (format 3, ``relays_for``).
    max_relays_for: int = 4096
    #: Distinct author ids in one segment's ``authors`` table (format 3).
    max_segment_authors: int = 65_536
    #: Receipts carried in one bundle header (the sender's and those it passes on).
    max_receipts: int = 4096
    #: How far (ms) an incoming HLC may lie ahead of this replica's wall clock.
    max_clock_skew_ms: int = 24 * 3600 * 1000
    #: What a trust-mode replica keeps of keys it knows nothing about (no certificate,
    #: revocation or successor: anyone can make such keys), per key and in all; beyond
    #: it, the oldest of that data is dropped (``offsync.plan.quarantine``). Local storage
    #: bounds, not part of the wire format.
    max_unknown_signer_bytes: int = 1 * MiB
    max_unknown_signer_segments: int = 256
    max_unknown_bytes: int = 8 * MiB
    max_unknown_segments: int = 2048
    #: Memory (estimated before allocating) that the values decoded from one msgpack
    #: item may take: a header, a receipt, a knowledge statement, a segment, a bundle
    #: body, a segment's block (offsync.unpack says how it is estimated). Bounds what a
    #: few bytes, or a small zstd frame, can make a decoder allocate.
    max_decode_bytes: int = 64 * MiB
    #: One blob (docs/spec.md, "Blob references"): larger ones are refused before any
    #: byte is stored. A scanned form or an ID recording is a few hundred KB to a few MB.
    max_blob_bytes: int = 256 * MiB
    #: The chunks a blob is stored in (and will travel in): what a store reads or
    #: writes at once, and the unit a broken transfer resumes from.
    blob_chunk_bytes: int = 1 * MiB
    #: The media type of a blob reference, in bytes (format rule: a reference with a
    #: longer one is malformed).
    max_media_type: int = 255


DEFAULT_LIMITS = Limits()
