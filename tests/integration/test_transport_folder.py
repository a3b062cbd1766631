"""The shared-folder transport: conformance, atomic files, duplicates, crashes, concurrency."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.testing import check_transport
from offsync.transports import FolderTransport, Transport
from tests.helpers.special import bundle_like_name, device, no_hang, plant, posix_only


def replica(path: Path, label: str) -> Replica:
    return Replica.open(str(path / f"{label}.sqlite"), identity=Identity.generate(label))


@pytest.mark.parametrize("encrypt", [False, True])
def test_folder_conforms(tmp_path: Path, encrypt: bool) -> None:
    counter = iter(range(100))

    @contextmanager
    def make_pair(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
        root = tmp_path / f"share{next(counter)}"
        with (
            FolderTransport(root, a, b, encrypt=encrypt) as ta,
            FolderTransport(root, b, a, encrypt=encrypt) as tb,
        ):
            yield ta, tb

    check_transport(make_pair)


def test_half_written_file_is_never_picked_up(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    a.put("r", "1", {"v": 1})
    share = tmp_path / "share"
    ta, tb = FolderTransport(share, a, b), FolderTransport(share, b, a)
    bundle = a.pack()[0]
    inbox = tb.inbox
    inbox.mkdir(parents=True)
    # A writer that died mid-write leaves its temporary file behind.
    (inbox / ".tmp-abc123.part").write_bytes(bundle[: len(bundle) // 2])
    report = sync(b, tb, push=False)
    assert report.received == [] and report.refused == []
    assert b.get("r", "1") is None
    sync(a, ta)
    assert sync(b, tb).applied == 1
    assert (inbox / ".tmp-abc123.part").exists()  # not ours to remove while it may be live


def test_file_renamed_but_truncated_is_refused_and_set_aside(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    a.put("r", "1", {"v": 1})
    share = tmp_path / "share"
    ta, tb = FolderTransport(share, a, b), FolderTransport(share, b, a)
    sync(a, ta)
    (path,) = list(tb.inbox.glob("*.ofb"))
    path.write_bytes(path.read_bytes()[:-10])
    before = b.state_digest()
    report = sync(b, tb, push=False)
    assert len(report.refused) == 1
    assert "do not match the file name" in report.refused[0].reason
    assert b.state_digest() == before
    assert not path.exists() and (tb.refused_dir / path.name).exists()
    assert "do not match" in (tb.refused_dir / (path.name + ".txt")).read_text()


def test_same_bundle_three_paths_applied_once(tmp_path: Path) -> None:
    """Three relays drop the same bundle into the centre's outbox: one file, one apply."""
    a, centre = replica(tmp_path, "a"), replica(tmp_path, "centre")
    for i in range(5):
        a.put("r", str(i), {"v": i})
    bundle = a.pack()[0]
    share = tmp_path / "share"
    relays = [Identity.generate(f"relay{i}") for i in range(3)]
    for relay in relays:
        assert FolderTransport(share, relay, centre).send([bundle]) == 1
    tc = FolderTransport(share, centre, a)
    assert len(list(tc.inbox.glob("*.ofb"))) == 1
    report = sync(centre, tc)
    assert report.applied == 5
    # And a second copy arriving later is a duplicate, not a second application.
    FolderTransport(share, relays[0], centre).send([bundle])
    again = sync(centre, tc)
    assert again.applied == 0 and again.duplicates == 5
    assert centre.state_digest() == a.state_digest()


def test_crash_between_apply_and_cleanup(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    for i in range(3):
        a.put("r", str(i), {"v": i})
    share = tmp_path / "share"
    sync(a, FolderTransport(share, a, b))
    tb = FolderTransport(share, b, a)
    for item in tb.receive(b.knowledge()):
        assert isinstance(item, bytes)
        b.apply(item)  # the process is killed here, before acknowledge
    b.close()
    b = Replica.open(str(tmp_path / "b.sqlite"), identity=b.identity)  # restarted
    tb = FolderTransport(share, b, a)
    report = sync(b, tb)
    assert report.applied == 0 and report.duplicates == 3
    assert list(tb.inbox.glob("*.ofb")) == []
    assert b.state_digest() == a.state_digest()


def test_receipt_only_bundles_do_not_pile_up(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    ta = FolderTransport(tmp_path / "share", a, b)
    a.put("r", "1", {"v": 1})
    for _ in range(5):
        sync(a, ta)  # b is away
    files = list(ta.outbox(b.id).glob("*.ofb"))
    assert len(files) == 1  # the data bundle: idle rounds with nothing new leave nothing
    sync(a, ta)
    tb = FolderTransport(tmp_path / "share", b, a)
    assert sync(b, tb).applied == 1


def test_sealed_bundle_for_someone_else_is_left_for_them(tmp_path: Path) -> None:
    a, b, c = (replica(tmp_path, x) for x in "abc")
    a.put("r", "1", {"v": 1})
    share = tmp_path / "share"
    tb = FolderTransport(share, b, a)
    tb.inbox.mkdir(parents=True)
    # A bundle sealed to c, misfiled in b's outbox.
    sealed = a.pack(recipient=c.id)[0]
    FolderTransport(share, a, b).send([sealed])
    report = sync(b, tb, push=False)
    assert report.received == [] and report.refused == []
    assert len(list(tb.inbox.glob("*.ofb"))) == 1


def _writer(share: Path, index: int, centre: bytes, errors: list[BaseException]) -> None:
    try:
        r = Replica.open(str(share.parent / f"w{index}.sqlite"), identity=Identity.generate())
        t = FolderTransport(share, r, centre)
        for round_ in range(6):
            with r.batch():
                for i in range(10):
                    r.put("r", f"{index}-{round_}-{i}", {"v": i})
            sync(r, t, max_bytes=4096)
        r.close()
    except BaseException as exc:  # pragma: no cover - reported below
        errors.append(exc)


def test_concurrent_writers_and_a_reader(tmp_path: Path) -> None:
    share = tmp_path / "share"
    centre = replica(tmp_path, "centre")
    tc = FolderTransport(share, centre)
    errors: list[BaseException] = []
    writers = [
        threading.Thread(target=_writer, args=(share, i, centre.id, errors)) for i in range(4)
    ]
    for w in writers:
        w.start()
    applied = 0
    while any(w.is_alive() for w in writers):
        applied += sync(centre, tc, push=False).applied  # reading while they write
    for w in writers:
        w.join()
    assert errors == []
    report = sync(centre, tc, push=False)
    applied += report.applied
    assert report.refused == []
    assert applied == 4 * 6 * 10
    assert centre.knowledge().count() == 240
    assert sorted(os.listdir(tc.inbox)) == []


@posix_only
def test_special_files_named_like_bundles_are_refused_never_read(tmp_path: Path) -> None:
    """A FIFO (blocks a reader forever), a link to /dev/zero (never ends), a link to a
    FIFO and a directory, all named like bundles, in the inbox of each side and in the
    outbox a site reads to learn what is in transit: refused with the reason, set
    aside, never opened as data; the real bundle next to them is applied."""
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    a.put("r", "1", {"v": 1})
    share = tmp_path / "share"
    ta, tb = FolderTransport(share, a, b), FolderTransport(share, b, a)
    sync(a, ta)
    at_b = plant(tb.inbox, [bundle_like_name() for _ in range(3)], tmp_path / "elsewhere")
    at_b["directory"] = tb.inbox / bundle_like_name()
    at_b["directory"].mkdir()
    if device(tb.inbox / (name := bundle_like_name())):  # where this process may mknod
        at_b["device"] = tb.inbox / name
    at_a = plant(ta.inbox, [bundle_like_name() for _ in range(3)], tmp_path / "elsewhere")
    with no_hang():
        report = sync(b, tb)  # reads its inbox, and the outbox to a (what is in transit)
    assert report.applied == 1 and b.get("r", "1") == {"v": 1}
    reasons = {Path(r.source).name: r.reason for r in report.refused}
    assert sorted(reasons) == sorted(p.name for p in at_b.values())
    assert "a FIFO (named pipe), not a regular file" in reasons[at_b["fifo"].name]
    assert "a symbolic link, not a regular file" in reasons[at_b["zero"].name]
    assert "a symbolic link, not a regular file" in reasons[at_b["to_fifo"].name]
    assert "a directory, not a regular file" in reasons[at_b["directory"].name]
    if "device" in at_b:
        assert "a character device, not a regular file" in reasons[at_b["device"].name]
    for path in at_b.values():  # set aside, with a note; the link still points nowhere read
        assert not os.path.lexists(path)
        assert os.path.lexists(tb.refused_dir / path.name)
        assert "not a regular file" in (tb.refused_dir / (path.name + ".txt")).read_text()
    with no_hang():
        again = sync(b, tb)
        back = sync(a, ta)  # a's inbox holds b's answer, next to the planted entries
    assert again.refused == []
    assert len(back.refused) == 3 and back.received  # b's receipt came through
    assert a.receipts()[b.id].knowledge >= a.knowledge()
    assert not any(os.path.lexists(p) for p in at_a.values())


@posix_only
def test_a_link_under_the_name_of_a_note_is_replaced_not_written_through(
    tmp_path: Path,
) -> None:
    """The note saying why a file was set aside never follows a link planted under its
    name (it would overwrite any file the link points to)."""
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    share = tmp_path / "share"
    tb = FolderTransport(share, b, a)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    name = bundle_like_name()
    tb.inbox.mkdir(parents=True)
    (tb.inbox / name).write_bytes(b"not a bundle")
    tb.refused_dir.mkdir(parents=True)
    os.symlink(victim, tb.refused_dir / (name + ".txt"))
    report = sync(b, tb, push=False)
    assert len(report.refused) == 1
    assert victim.read_text() == "precious\n"
    assert not (tb.refused_dir / (name + ".txt")).is_symlink()
