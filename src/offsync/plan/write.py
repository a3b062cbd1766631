"""A local write: the change it makes, or why it may not be made.

A write names the record's current heads as its parents (so it supersedes them on
every replica), takes the next own seq and a timestamp past everything this site has
seen, and is refused locally when peers would refuse it (``NotAuthorisedError``: the
trust store or a validator says no). This module is sans-IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..blobs import BLOB_KEY, BLOB_MARK, check_references
from ..change import DELETE, PUT, Change, ChangeId
from ..encoding import canonical_fields, decode_fields
from ..errors import BlobReferenceError, ImmutableRecordError, NotAuthorisedError, UsageError
from ..limits import Limits
from ..trust import TrustStore, Validator, verdict

__all__ = ["check_name", "encode_write", "plan_write"]


def check_name(value: str, what: str, max_bytes: int) -> None:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string")
    if len(value.encode()) > max_bytes:
        raise UsageError(f"{what} longer than {max_bytes} bytes")


def encode_write(
    collection: str, key: str, fields: Mapping[str, Any] | None, limits: Limits
) -> bytes | None:
    """Check the names and encode the fields of a write (None: a delete)."""
    check_name(collection, "collection", limits.max_collection_bytes)
    check_name(key, "key", limits.max_key_bytes)
    if fields is None:
        return None
    try:
        encoded = canonical_fields(fields)
    except TypeError as exc:
        raise UsageError(str(exc)) from exc
    if BLOB_MARK in encoded:
        try:
            check_references(decode_fields(encoded), limits)
        except BlobReferenceError as exc:
            raise UsageError(
                f"{exc}: a map whose only key is {BLOB_KEY!r} is a blob reference"
                " (docs/spec.md, 'Blob references'); to keep other data under that key,"
                " give the map a second key"
            ) from exc
    if len(encoded) > limits.max_fields_bytes:
        raise UsageError(f"fields encode to more than {limits.max_fields_bytes} bytes")
    return encoded


def plan_write(
    origin: bytes,
    seq: int,
    hlc: int,
    collection: str,
    key: str,
    encoded: bytes | None,
    *,
    heads: tuple[ChangeId, ...],
    visible: bool,
    immutable: bool,
    resolving: bool,
    trust: TrustStore | None,
    validators: Mapping[str, Validator],
) -> Change:
    """The change a write of ``encoded`` (None: a delete) makes as own seq ``seq`` at
    ``hlc``, on a record whose heads are ``heads`` (``visible``: not deleted);
    ``immutable``: the collection's policy is first-writer-wins."""
    if not resolving and immutable and visible:
        raise ImmutableRecordError(
            f"this {collection} record is first-writer-wins and already recorded;"
            " use resolve()"  # no key in messages: keys (NIKs) are personal data
        )
    change = Change(
        origin, seq, hlc, collection, key, PUT if encoded is not None else DELETE, encoded, heads
    )
    status = verdict(change, trust, validators)
    if status is not None:
        raise NotAuthorisedError(f"this site may not write this record: {status}")
    return change
