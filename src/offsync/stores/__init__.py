"""Stores: where a replica keeps its segments, changes and record states."""

from .base import RecordRow, SegmentRow, Store

__all__ = ["RecordRow", "SegmentRow", "Store"]
