"""A site restored from a backup that lacks a whole foreign origin gets it back over a
mailbox (issue 18, the union reader rule against restores).

Readers union what one signer's receipts said, since a receipt may be restricted to
what its receiver needs. A site restored from a backup taken before it received origin
X states nothing of X; before the fix, its folder peer kept X from the site's older
receipts in its union and never sent X again (HTTP was fine: a pull states what the
site holds). Now a receipt a site signs for its peer and sends itself (the first
receipt of its bundle) is taken at its word (docs/design.md, "Receipts bounded by the
receiver"), and a site told by a peer's receipt of an origin it holds nothing of
answers, so the peer learns what it lacks even when the site writes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.transports import DiskTransport, FolderTransport


def _restore(copy: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(copy, path)


def _pair(kind: str, root: Path, a: Replica, b: Replica) -> tuple[FolderTransport, FolderTransport]:
    if kind == "disk":  # one disk carried both ways by a courier
        return DiskTransport(root, a, b), DiskTransport(root, b, a)
    return FolderTransport(root, a, b), FolderTransport(root, b, a)


def _both(a: Replica, b: Replica, kind: str, root: Path, rounds: int = 3) -> None:
    for _ in range(rounds):
        ta, tb = _pair(kind, root, a, b)
        sync(a, ta)
        sync(b, tb)


@pytest.mark.parametrize("kind", ["folder", "disk"])
@pytest.mark.parametrize("who_writes", ["site", "peer"])
def test_a_site_restored_without_an_origin_gets_it_back_over_a_mailbox(
    tmp_path: Path, kind: str, who_writes: str
) -> None:
    """Site A and district B share a folder (or a disk); B also hears from T (origin X).
    A is backed up before X reached it, receives X, tells B, and is restored. After
    that, whoever writes next, the mailbox rounds bring X back to A."""
    root = tmp_path / "share"
    root.mkdir()
    path = tmp_path / "a.sqlite"
    ida = Identity.generate(label="a")
    a = Replica.open(str(path), identity=ida)
    b = Replica.open(str(tmp_path / "b.sqlite"), identity=Identity.generate(label="b"))
    t = Replica.open(":memory:", identity=Identity.generate(label="t"))
    try:
        a.put("residents", "a1", {"by": "a"})
        _both(a, b, kind, root)
        a.close()
        saved = tmp_path / "a.bak"
        shutil.copyfile(path, saved)  # last night's backup: no X in it
        a = Replica.open(str(path), identity=ida)

        t.put("residents", "t1", {"by": "t"})  # origin X, reaching A only through B
        for bundle in t.pack(b.knowledge()):
            b.apply(bundle)
        _both(a, b, kind, root)
        assert a.get("residents", "t1") is not None
        assert t.id in set(b.peer_knowledge(a.id)[a.id].origins()), "B knows A holds X"

        a.close()
        _restore(saved, path)  # the disk died; the backup comes back
        a = Replica.open(str(path), identity=ida)
        assert a.get("residents", "t1") is None and t.id not in set(a.knowledge().origins())

        writer = a if who_writes == "site" else b
        writer.put("residents", "after", {"by": who_writes})
        _both(a, b, kind, root)
        assert a.get("residents", "t1") == {"by": "t"}, "X never came back to A"
        assert b.get("residents", "after") is not None and a.get("residents", "after")
        assert a.state_digest() == b.state_digest()
        said = b.peer_knowledge(a.id)[a.id]
        assert said <= a.knowledge(), "B's union claims more than A holds"
    finally:
        for r in (a, b, t):
            r.close()


@pytest.mark.parametrize("kind", ["folder", "disk"])
def test_a_restored_site_speaks_first_when_told_it_was_restored(tmp_path: Path, kind: str) -> None:
    """Nobody writes after the restore. The restored store's records of what A told B
    say A told B everything it holds, and B told A about X, so both would stay quiet
    for ever; ``forget_told`` (what ``offsync restore`` does) makes A's next round a
    first contact: its receipt reaches B, which sends X again."""
    root = tmp_path / "share"
    root.mkdir()
    path = tmp_path / "a.sqlite"
    ida = Identity.generate(label="a")
    a = Replica.open(str(path), identity=ida)
    b = Replica.open(str(tmp_path / "b.sqlite"), identity=Identity.generate(label="b"))
    t = Replica.open(":memory:", identity=Identity.generate(label="t"))
    try:
        a.put("residents", "a1", {"by": "a"})
        _both(a, b, kind, root)
        a.close()
        saved = tmp_path / "a.bak"
        shutil.copyfile(path, saved)
        t.put("residents", "t1", {"by": "t"})
        for bundle in t.pack(b.knowledge()):
            b.apply(bundle)
        a = Replica.open(str(path), identity=ida)
        _both(a, b, kind, root)
        assert a.get("residents", "t1") is not None
        a.close()
        _restore(saved, path)
        a = Replica.open(str(path), identity=ida)
        _both(a, b, kind, root)
        assert a.get("residents", "t1") is None, "both quiet: nothing new to say"
        a.forget_told()
        _both(a, b, kind, root)
        assert a.get("residents", "t1") == {"by": "t"}
        assert a.state_digest() == b.state_digest()
        quiet = sync(a, _pair(kind, root, a, b)[0])
        assert quiet.sent_bundles == 0, "said once: quiet again"
    finally:
        for r in (a, b, t):
            r.close()
