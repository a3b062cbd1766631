"""zstd frames: written once by a segment's origin, opened under limits by everyone else.

A frame from elsewhere is checked before anything is allocated for it: it must be one
frame, declare its content size, that size must be within the caller's limit, its
window within ``Limits.max_window_bytes``, it names no dictionary, and no byte follows
it. python-zstandard's ``max_output_size`` does not bound a frame that declares its own
size, so the declared size is checked here first.
"""

from __future__ import annotations

import zstandard

from .errors import BundleFormatError, LimitExceededError
from .limits import Limits

__all__ = ["compress", "decompress", "raw_frame"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_BLOCK = 128 * 1024  # zstd's largest block (Block_Maximum_Size)


def compress(data: bytes, level: int) -> bytes:
    """One frame with its content size declared and no checksum (a signature covers it)."""
    return zstandard.ZstdCompressor(
        level=level, write_content_size=True, write_checksum=False
    ).compress(data)


def _frame_length(frame: bytes) -> int:
    """Length of the single zstd frame at the start of ``frame`` (RFC 8878 section 3.1)."""
    try:
        pos = zstandard.frame_header_size(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError("not a zstd frame") from exc
    checksum = frame[4] & 0x04
    while True:
        if pos + 3 > len(frame):
            raise BundleFormatError("zstd frame truncated")
        bh = int.from_bytes(frame[pos : pos + 3], "little")
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        pos += 3 + (1 if btype == 1 else bsize)
        if btype == 3:
            raise BundleFormatError("zstd frame uses a reserved block type")
        if last:
            break
    return pos + (4 if checksum else 0)


def decompress(frame: bytes, max_size: int, limits: Limits, what: str) -> bytes:
    """Open one untrusted frame of at most ``max_size`` decompressed bytes."""
    if type(frame) is not bytes or frame[:4] != _ZSTD_MAGIC:
        raise BundleFormatError(f"{what} is not a zstd frame")
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError(f"{what} has a damaged zstd frame header") from exc
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
        raise BundleFormatError(f"{what}: the zstd frame must declare its content size")
    if size > max_size:
        raise LimitExceededError(f"{what} of {size} bytes decompressed, over the limit")
    if params.window_size > limits.max_window_bytes:
        raise LimitExceededError(
            f"{what}: zstd window of {params.window_size} bytes over the limit"
        )
    if params.dict_id != 0:
        raise BundleFormatError(f"{what}: zstd dictionaries are not used by offsync")
    if _frame_length(frame) != len(frame):
        raise BundleFormatError(f"bytes after the zstd frame of {what}")
    try:
        data = zstandard.ZstdDecompressor(max_window_size=limits.max_window_bytes).decompress(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError(f"{what} does not decompress: {exc}") from exc
    if len(data) != size:
        raise BundleFormatError(f"{what} decompressed to the wrong size")
    return bytes(data)


def raw_frame(data: bytes) -> bytes:
    """A frame that stores ``data`` as it is (raw blocks, no compression).

    Any zstd decoder opens it, and every implementation writes the same bytes for the
    same data, which is what the known-answer vectors need (a compressor's output may
    differ between zstd versions). Content size declared in 8 bytes, single segment
    (the window is the content size), no checksum.
    """
    out = [_ZSTD_MAGIC, b"\xe0", len(data).to_bytes(8, "little")]
    blocks = range(0, len(data), _MAX_BLOCK) if data else range(1)
    for start in blocks:
        chunk = data[start : start + _MAX_BLOCK]
        last = start + _MAX_BLOCK >= len(data)
        out += [(len(chunk) << 3 | int(last)).to_bytes(3, "little"), chunk]
    return b"".join(out)
