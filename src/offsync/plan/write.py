"""A local write: the change it makes, or why it may not be made.

A write names the record's current heads as its parents (so it supersedes them on
every replica), takes the next own seq and a timestamp past everything this site has
seen, and is refused locally when peers would refuse it (``NotAuthorisedError``: the
trust store or a validator says no). This module is sans-IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from itertools import compress, repeat
from typing import Any, NamedTuple

from ..blobs import BLOB_KEY, BLOB_MARK, check_references
from ..change import DELETE, MAX_AUTHOR_BYTES, PUT, Change, ChangeId
from ..clock import MAX_HLC
from ..encoding import canonical_value, canonical_values
from ..errors import (
    BlobReferenceError,
    ClockError,
    ImmutableRecordError,
    NotAuthorisedError,
    UsageError,
)
from ..limits import Limits
from ..trust import TrustStore, Validator, verdict

__all__ = [
    "EncodedWrites",
    "check_author",
    "check_name",
    "encode_write",
    "encode_write_value",
    "encode_writes",
    "plan_new",
    "plan_write",
]

_STR_ONLY = frozenset({str})
_new_change = partial(tuple.__new__, Change)  # Change(*row) without the Python-level __new__


def check_name(value: str, what: str, max_bytes: int) -> None:
    if type(value) is str and value.isascii() and 0 < len(value) <= max_bytes:
        return  # the common case, checked in C: ASCII has no lone surrogates, 1 byte each
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate: not text any peer could read
        raise UsageError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    if size > max_bytes:
        raise UsageError(f"{what} longer than {max_bytes} bytes")


def check_author(author: str | None) -> str | None:
    """An author id as the format carries it (docs/spec.md §5): None, or 1-64 bytes
    of UTF-8 text (a clerk id the application gives; offsync never interprets it)."""
    if author is not None:
        check_name(author, "an author id", MAX_AUTHOR_BYTES)
    return author


def encode_write(
    collection: str, key: str, fields: Mapping[str, Any] | None, limits: Limits
) -> bytes | None:
    """Check the names and encode the fields of a write (None: a delete)."""
    return encode_write_value(collection, key, fields, limits)[0]


def encode_write_value(
    collection: str, key: str, fields: Mapping[str, Any] | None, limits: Limits
) -> tuple[bytes | None, dict[str, Any] | None]:
    """``encode_write``, and the value its bytes decode to (``canonical_value``): what
    sealing the change needs, so that it is not decoded again."""
    check_name(collection, "collection", limits.max_collection_bytes)
    check_name(key, "key", limits.max_key_bytes)
    if fields is None:
        return None, None
    try:
        encoded, value = canonical_value(fields)
    except TypeError as exc:
        raise UsageError(str(exc)) from exc
    if BLOB_MARK in encoded:
        _check_blob_references(value, limits)
    if len(encoded) > limits.max_fields_bytes:
        raise UsageError(f"fields encode to more than {limits.max_fields_bytes} bytes")
    return encoded, value


def _check_blob_references(value: dict[str, Any], limits: Limits) -> None:
    """Refuse fields that hold a malformed blob reference (a writer never writes one)."""
    try:
        check_references(value, limits)
    except BlobReferenceError as exc:
        raise UsageError(
            f"{exc}: a map whose only key is {BLOB_KEY!r} is a blob reference"
            " (docs/spec.md, 'Blob references'); to keep other data under that key,"
            " give the map a second key"
        ) from exc


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
    prefix: str = "",
    schema: int = 0,
    author: str | None = None,
) -> Change:
    """The change a write of ``encoded`` (None: a delete) makes as own seq ``seq`` at
    ``hlc``, on a record whose heads are ``heads`` (``visible``: not deleted);
    ``immutable``: the collection's policy is first-writer-wins; ``schema``: the
    collection's current schema version; ``author``: who entered it (checked)."""
    if not resolving and immutable and visible:
        raise ImmutableRecordError(
            f"this {collection} record is first-writer-wins and already recorded;"
            " use resolve()"  # no key in messages: keys (NIKs) are personal data
        )
    op = PUT if encoded is not None else DELETE
    change = Change(origin, seq, hlc, collection, key, op, encoded, heads, prefix, schema, author)
    status = verdict(change, trust, validators)
    if status is not None:
        raise NotAuthorisedError(f"this site may not write this record: {status}")
    return change


class EncodedWrites(NamedTuple):
    """A bulk write's records, checked and encoded (``encode_writes``), in input order."""

    keys: list[str]
    encoded: list[bytes]  # canonical field bytes
    values: list[dict[str, Any]]  # the canonical values those bytes decode to
    key_bytes: list[int]  # each key's length in UTF-8


def encode_writes(
    collection: str, records: Iterable[tuple[str, Mapping[str, Any]]], limits: Limits
) -> EncodedWrites:
    """Check the names and encode the fields of many puts into ``collection`` (raises
    ``UsageError`` for the first that ``put`` would refuse, naming its position). The
    checks are passes over all records; only a refusal looks for the first culprit."""
    check_name(collection, "collection", limits.max_collection_bytes)
    pairs = list(records)
    if not pairs:
        return EncodedWrites([], [], [], [])
    try:
        keys, fields = map(list, zip(*pairs, strict=True))
    except (TypeError, ValueError):
        i = next(i for i, item in enumerate(pairs) if not _is_pair(item))
        raise UsageError(f"record {i}: give (key, fields) pairs") from None
    if not set(map(type, keys)) <= _STR_ONLY or not all(keys):
        i = next(i for i, k in enumerate(keys) if type(k) is not str or not k)
        raise UsageError(f"record {i}: the key must be a non-empty string")
    try:
        key_bytes = list(map(len, map(str.encode, keys)))
    except UnicodeEncodeError:
        for i, k in enumerate(keys):
            check_name(k, f"record {i}: the key", limits.max_key_bytes)
        raise  # pragma: no cover - check_name refused the key that failed
    if max(key_bytes) > limits.max_key_bytes:
        i = next(i for i, n in enumerate(key_bytes) if n > limits.max_key_bytes)
        raise UsageError(f"record {i}: key longer than {limits.max_key_bytes} bytes")
    done = canonical_values(fields)
    if done is not None:
        encoded, values = done
    else:  # one by one, to say which record is refused and why
        encoded, values = [], []
        try:
            for encoded_fields, value in map(canonical_value, fields):
                encoded.append(encoded_fields)
                values.append(value)
        except UsageError as exc:
            raise type(exc)(f"record {len(encoded)}: {exc}") from exc
    for i in compress(range(len(encoded)), map(bytes.__contains__, encoded, repeat(BLOB_MARK))):
        try:
            _check_blob_references(values[i], limits)
        except UsageError as exc:
            raise UsageError(f"record {i}: {exc}") from exc
    longest = limits.max_fields_bytes
    if max(map(len, encoded)) > longest:
        i = next(i for i, e in enumerate(encoded) if len(e) > longest)
        raise UsageError(f"record {i}: fields encode to more than {longest} bytes")
    return EncodedWrites(keys, encoded, values, key_bytes)


def _is_pair(item: Any) -> bool:
    try:
        _, _ = item
    except (TypeError, ValueError):
        return False
    return True


def plan_new(
    origin: bytes,
    first_seq: int,
    first_hlc: int,
    collection: str,
    keys: Sequence[str],
    encoded: Sequence[bytes],
    *,
    trust: TrustStore | None,
    validators: Mapping[str, Validator],
    schema: int = 0,
    author: str | None = None,
) -> list[Change]:
    """The puts that create records which have no change yet (so no parents, and a
    first-writer-wins policy has nothing to refuse), as consecutive own seqs from
    ``first_seq`` with consecutive timestamps from ``first_hlc`` (what a run of
    ``plan_write`` gives when the wall clock does not move past them). All of them, or
    ``NotAuthorisedError`` for the first the trust store or a validator refuses."""
    n = len(keys)
    if first_hlc + n - 1 > MAX_HLC:
        raise ClockError("hybrid logical clock exhausted: no HLC is left below 2^63")
    changes = list(
        map(
            _new_change,
            zip(
                repeat(origin, n),
                range(first_seq, first_seq + n),
                range(first_hlc, first_hlc + n),
                repeat(collection, n),
                keys,
                repeat(PUT, n),
                encoded,
                repeat((), n),
                repeat("", n),  # prefix: bulk writes go to collections of one partition
                repeat(schema, n),
                repeat(author, n),
                strict=True,
            ),
        )
    )
    if trust is not None or validators.get(collection) is not None:
        for change in changes:
            status = verdict(change, trust, validators)
            if status is not None:
                raise NotAuthorisedError(f"this site may not write this record: {status}")
    return changes
