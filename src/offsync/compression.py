"""zstd frames of format 3: written once by a segment's origin (or its redactor),
opened under limits by everyone else (docs/spec.md §6.2).

A frame from elsewhere is checked before anything is allocated for it: one frame
(RFC 8878 §3.1.1, no skippable frame), its content size declared and within the
caller's limit, no dictionary, no byte after it, and a window within
``max_window_bytes`` unless the frame is *single-segment*: then its window is its
content size, which the decoder writes straight into the one output buffer, so the
content-size limit is the memory bound (format 2 as first written refused such frames
over 8 MiB, which made raw frames and high levels over 8 MiB invalid; format 2 now
uses this code). A content checksum, when present, must match; the content must be
exactly the declared size.
"""

from __future__ import annotations

import zstandard

from .errors import BundleFormatError, LimitExceededError
from .limits import Limits

__all__ = ["MAX_RAW_BLOCK", "ZSTD_MAGIC", "compress", "decompress", "raw_frame"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: zstd's largest block (Block_Maximum_Size), and the size of every raw block of a
#: raw frame but the last.
MAX_RAW_BLOCK = 128 * 1024
_SINGLE_SEGMENT = 0x20
_CHECKSUM = 0x04
_DICTIONARY = 0x03


def compress(data: bytes, level: int) -> bytes:
    """One frame with its content size declared and no checksum (a signature covers it)."""
    return zstandard.ZstdCompressor(
        level=level, write_content_size=True, write_checksum=False
    ).compress(data)


def _frame_length(frame: bytes) -> int:
    """Length of the single zstd frame at the start of ``frame`` (RFC 8878 §3.1.1)."""
    try:
        pos = zstandard.frame_header_size(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError("not a zstd frame") from exc
    while True:
        if pos + 3 > len(frame):
            raise BundleFormatError("zstd frame truncated")
        header = int.from_bytes(frame[pos : pos + 3], "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise BundleFormatError("zstd frame uses the reserved block type")
        pos += 3 + (1 if kind == 1 else size)
        if last:
            break
    return pos + (4 if frame[4] & _CHECKSUM else 0)


def decompress(frame: bytes, max_size: int, limits: Limits, what: str) -> bytes:
    """Open one untrusted frame of at most ``max_size`` decompressed bytes."""
    if type(frame) is not bytes or frame[:4] != ZSTD_MAGIC or len(frame) < 5:
        raise BundleFormatError(f"{what} is not a zstd frame")
    descriptor = frame[4]
    if descriptor & _DICTIONARY:
        raise BundleFormatError(f"{what}: zstd dictionaries are not used by offsync")
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError(f"{what} has a damaged zstd frame header") from exc
    size = params.content_size
    if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
        raise BundleFormatError(f"{what}: the zstd frame must declare its content size")
    if size > max_size:
        raise LimitExceededError(f"{what} of {size} bytes decompressed, over the limit")
    single = bool(descriptor & _SINGLE_SEGMENT)
    if not single and params.window_size > limits.max_window_bytes:
        raise LimitExceededError(
            f"{what}: zstd window of {params.window_size} bytes over the limit"
        )
    if _frame_length(frame) != len(frame):
        raise BundleFormatError(f"bytes after the zstd frame of {what}")
    window = max(limits.max_window_bytes, 1 << max(size - 1, 1).bit_length()) if single else 0
    try:
        data = zstandard.ZstdDecompressor(
            max_window_size=window or limits.max_window_bytes
        ).decompress(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError(f"{what} does not decompress: {exc}") from exc
    if len(data) != size:
        raise BundleFormatError(f"{what} decompressed to another size than it declares")
    return bytes(data)


def raw_frame(data: bytes) -> bytes:
    """The frame that stores ``data`` as it is: raw blocks, no compression (§6.2).

    Every implementation writes the same bytes for the same data, which is what the
    known-answer vectors need (a compressor's output may differ between zstd
    versions): magic, frame header descriptor ``e0`` (single segment, 8-byte content
    size, no checksum, no dictionary), the size as 8 little-endian bytes, then raw
    blocks of 128 KiB, the last shorter (one empty last block for empty data).
    """
    out = [ZSTD_MAGIC, b"\xe0", len(data).to_bytes(8, "little")]
    starts = range(0, len(data), MAX_RAW_BLOCK) if data else range(1)
    for start in starts:
        chunk = data[start : start + MAX_RAW_BLOCK]
        last = start + MAX_RAW_BLOCK >= len(data)
        out += [(len(chunk) << 3 | int(last)).to_bytes(3, "little"), chunk]
    return b"".join(out)
