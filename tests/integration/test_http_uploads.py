"""Resumable uploads without a server: the Content-Range state machine, partial files,
their locks and bounds (``offsync.http.uploads``), and the one table of error answers
(``offsync.http.refusals``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from offsync.errors import (
    BundleFormatError,
    OffsyncError,
    SignatureError,
    StorageConflictError,
    StorageFullError,
    UsageError,
)
from offsync.http.ranges import ChunkRange, CommitRange, ContentRange
from offsync.http.refusals import Refusal, refusal_for
from offsync.http.uploads import RECENT_IDS, Append, Held, Uploads

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def uploads(directory: Path, max_partial: int = 10, ttl: float = 3600) -> Uploads:
    return Uploads(
        directory, max_upload_bytes=1000, max_partial=max_partial, ttl=ttl, busy_timeout=0.05
    )


def put(up: Uploads, bundle_id: str, rng: ContentRange, body: bytes) -> int:
    """What the server does with one Content-Range request: plan under the id's lock,
    then append what arrives; the bytes held after it."""
    held = up.lock(bundle_id)
    assert held is not None
    try:
        step = up.plan(bundle_id, rng, len(body) if isinstance(rng, ChunkRange) else 0)
        if isinstance(step, Held):
            return step.received
        appender = up.appender(step)
        appender.take(body)
        return appender.close()
    finally:
        up.unlock(bundle_id, held)


def refused(up: Uploads, bundle_id: str, rng: ContentRange, length: int | None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        up.plan(bundle_id, rng, length)
    return caught.value


def test_a_chunked_upload_resumes_where_the_server_copy_ends(tmp_path: Path) -> None:
    up = uploads(tmp_path)
    data = os.urandom(300)
    assert up.status(A).to_json() == {"id": A, "received": 0, "complete": False}
    assert put(up, A, ChunkRange(0, 99, 300), data[:100]) == 100
    # A chunk that does not start where the server's copy ends: resume there.
    wrong = refused(up, A, ChunkRange(150, 199, 300), 50)
    assert (wrong.status, wrong.body.error, wrong.body.received) == (409, "Conflict", 100)
    # A connection that broke mid-chunk: what arrived is kept.
    step = up.plan(A, ChunkRange(100, 299, 300), 200)
    assert isinstance(step, Append) and step.size == 200
    appender = up.appender(step)
    appender.take(data[100:160])
    assert appender.close() == 160
    assert up.status(A).to_json() == {"id": A, "received": 160, "total": 300, "complete": False}
    assert put(up, A, ChunkRange(160, 299, 300), data[160:]) == 300
    assert up.find(A) is not None and up.find(A).path.read_bytes() == data  # type: ignore[union-attr]
    # Nothing left to send: a commit leads to what is held.
    assert up.plan(A, CommitRange(300), 0) == Held(up.path(A, 300), 300)


def test_a_chunk_that_does_not_fit_is_a_bad_request(tmp_path: Path) -> None:
    up = uploads(tmp_path)
    for rng, length in (
        (ChunkRange(0, 300, 300), None),
        (ChunkRange(0, 99, 300), 99),
        (CommitRange(0), 0),  # nothing held, nothing to hold: not an upload
    ):
        refusal = refused(up, A, rng, length)
        assert (refusal.status, refusal.body.error) == (400, "BadRequest")
    assert up.find(A) is None


def test_an_upload_of_another_total_conflicts(tmp_path: Path) -> None:
    up = uploads(tmp_path)
    put(up, A, ChunkRange(0, 9, 300), b"x" * 10)
    refusal = refused(up, A, ChunkRange(0, 9, 400), 10)
    assert (refusal.status, refusal.body.received) == (409, None)
    assert "another total" in refusal.body.reason


def test_a_bundle_over_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    up = uploads(tmp_path)
    up.check_size(1000)
    with pytest.raises(Refusal) as caught:
        up.check_size(1001)
    assert (caught.value.status, caught.value.body.limit) == (413, 1000)


def test_a_chunk_keeps_no_more_than_its_range(tmp_path: Path) -> None:
    up = uploads(tmp_path)
    step = up.plan(A, ChunkRange(0, 9, 300), None)
    assert isinstance(step, Append)
    appender = up.appender(step)
    appender.take(b"y" * 25)
    assert appender.close() == 10


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_at_the_bound_the_partial_untouched_longest_gives_way(tmp_path: Path) -> None:
    up = uploads(tmp_path, max_partial=3)
    for n, bundle_id in enumerate((A, B, C)):
        put(up, bundle_id, ChunkRange(0, 9, 100), b"z" * 10)
        age(up.path(bundle_id, 100), 300 - n)  # A oldest
    put(up, D, ChunkRange(0, 9, 100), b"z" * 10)
    assert [up.find(i) is not None for i in (A, B, C, D)] == [False, True, True, True]


def test_a_partial_receiving_a_chunk_does_not_give_way(tmp_path: Path) -> None:
    up = uploads(tmp_path, max_partial=2)
    put(up, A, ChunkRange(0, 9, 100), b"z" * 10)
    put(up, B, ChunkRange(0, 9, 100), b"z" * 10)
    age(up.path(A, 100), 60)
    held = [up.lock(A), up.lock(B)]  # both receiving a chunk at this moment
    other = uploads(tmp_path, max_partial=2)  # another worker on the same directory
    refusal = refused(other, C, ChunkRange(0, 9, 100), 10)
    assert (refusal.status, refusal.body.error) == (503, "Busy")
    for bundle_id, fd in zip((A, B), held, strict=True):
        assert fd is not None
        up.unlock(bundle_id, fd)
    assert isinstance(other.plan(C, ChunkRange(0, 9, 100), 10), Append)  # A gave way
    assert other.find(A) is None and other.find(B) is not None


def test_what_is_untouched_past_its_ttl_is_dropped(tmp_path: Path) -> None:
    up = uploads(tmp_path, ttl=3600)
    put(up, A, ChunkRange(0, 9, 100), b"z" * 10)
    stale_lock = tmp_path / f"{B}.lock"
    stale_lock.touch()  # left by an upload that never finished
    age(up.path(A, 100), 7200)
    age(stale_lock, 7200)
    assert up.make_room()
    assert up.find(A) is None and not stale_lock.exists()


def test_one_upload_id_is_held_by_one_writer_at_a_time(tmp_path: Path) -> None:
    up, other = uploads(tmp_path), uploads(tmp_path)
    fd = up.lock(A)
    assert fd is not None
    assert other.lock(A) is None  # after busy_timeout: the request is answered 503
    up.unlock(A, fd)
    assert not (tmp_path / f"{A}.lock").exists()  # no partial of A: the lock file goes
    again = other.lock(A)
    assert again is not None
    other.unlock(A, again)


def test_recently_applied_ids_are_answered_as_done_and_bounded(tmp_path: Path) -> None:
    up = uploads(tmp_path)
    up.remember(A)
    assert up.status(A).to_json() == {"id": A, "received": None, "complete": True}
    for n in range(RECENT_IDS):
        up.remember(f"{n:064x}")
    assert A not in up.done and len(up.done) == RECENT_IDS


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (StorageFullError("disk full"), 507, "StorageFullError"),
        (StorageConflictError("deadlock"), 503, "Busy"),
        (SignatureError("forged"), 422, "SignatureError"),
        (BundleFormatError("bad"), 422, "BundleFormatError"),
    ],
)
def test_offsync_errors_map_to_answers_in_one_table(
    error: OffsyncError, status: int, name: str
) -> None:
    refusal = refusal_for(error)
    assert refusal is not None
    assert (refusal.status, refusal.body.error) == (status, name)
    assert refusal.final == (status < 500)  # a refused upload's bytes are dropped


def test_an_error_that_is_a_bug_has_no_answer() -> None:
    assert refusal_for(UsageError("misuse")) is None  # the app answers 500
