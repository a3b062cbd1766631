"""zstd frames: written once by a segment's origin, opened under limits by everyone else.

A frame from elsewhere is checked before anything is allocated for it (docs/spec.md
§5.1): one frame, its content size declared and within the caller's limit, no
dictionary, no byte after it, a window within ``Limits.max_window_bytes`` unless the
frame is *single-segment* (its window is then its content size, which the content-size
limit bounds), a matching content checksum when it has one, and content of exactly the
declared size. python-zstandard's ``max_output_size`` does not bound a frame that
declares its own size, so the declared size is checked first.

The frame rules are the same in formats 2 and 3, so format 2 uses format 3's code
(``offsync.v3.frame``); this module keeps the names format-2 code imports.
"""

from __future__ import annotations

from .v3.frame import compress, decompress, raw_frame

__all__ = ["compress", "decompress", "raw_frame"]
