"""Erasure in real replicas (SQLite files): an authority's erase order removes the
record's values from every store that admits it, travels as an ordinary change, and
redacted segments travel redacted (docs/spec.md §10.3-10.4, §6.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from offsync import Replica
from offsync.errors import NotAuthorisedError, UsageError
from offsync.identity import Identity
from offsync.sync import sync
from offsync.transports.memory import LoopbackTransport

NAME = "Siti Aminah Unik"


def _holds(replica: Replica, value: str) -> bool:
    """Whether the value is anywhere in the store's segments or records (raw bytes)."""
    needle = value.encode()
    st = replica._st
    keys = [(stream, s.first) for stream, segs in st.segments.items() for s in segs]
    if any(needle in data for data in replica.store.segment_data(keys)):
        return True
    for partition in replica.store.outbox_partitions():
        if any(needle in bytes(row) for _, row in replica.store.outbox(partition)):
            return True
    rows = replica.store.iter_records()
    if any(r.fields is not None and needle in r.fields for r in rows):
        return True
    return any(
        c.fields is not None and needle in c.fields
        for r in replica.store.iter_records()
        for c in replica.store.changes_for(r.collection, r.key)
    )


@pytest.fixture
def sites(tmp_path: Path) -> tuple[Replica, Replica, Replica]:
    auth, clerk, far = (
        Identity.generate("centre"),
        Identity.generate("kec"),
        Identity.generate("far"),
    )
    trust = [auth.public_key]
    from offsync.trust import issue_certificate

    centre = Replica.open(str(tmp_path / "c.db"), identity=auth, trust=trust)
    issue_certificate(centre, clerk)
    issue_certificate(centre, far)
    kec = Replica.open(str(tmp_path / "k.db"), identity=clerk, trust=trust)
    remote = Replica.open(str(tmp_path / "f.db"), identity=far, trust=trust)
    sync(kec, LoopbackTransport(centre, me=kec.id))
    sync(remote, LoopbackTransport(centre, me=remote.id))
    return centre, kec, remote


def test_an_erasure_reaches_every_replica_and_no_value_remains(
    sites: tuple[Replica, Replica, Replica],
) -> None:
    centre, kec, far = sites
    kec.put("residents", "3519", {"name": NAME, "village": "Kare"}, author="clerk-7")
    kec.put("residents", "3519", {"village": "Kare Lor"}, author="clerk-7")
    kec.put("residents", "3520", {"name": "Budi"})
    sync(kec, LoopbackTransport(centre, me=kec.id))
    assert _holds(centre, NAME)
    with pytest.raises(NotAuthorisedError):
        kec.erase("residents", "3519", "request 12")
    order = centre.erase("residents", "3519", "request 12", author="dpo")
    assert order is not None
    assert centre.get("residents", "3519") is None
    assert not _holds(centre, NAME)
    with pytest.raises(UsageError):
        centre.put("residents", "3519", {"name": "again"})
    assert centre.erase("residents", "3519", "again") is None
    # The order travels; the redacted segments travel redacted.
    sync(kec, LoopbackTransport(centre, me=kec.id))
    sync(far, LoopbackTransport(centre, me=far.id))
    for site in (kec, far):
        assert site.get("residents", "3519") is None
        assert site.get("residents", "3520") == {"name": "Budi"}
        assert not _holds(site, NAME)
        with pytest.raises(UsageError):
            site.put("residents", "3519", {"name": "again"})
    assert centre.state_digest() == kec.state_digest() == far.state_digest()
    ops = [e.op for e in far.history("residents", "3519")]
    assert ops == ["put", "put", "erase"]
    assert far.history("residents", "3519")[-1].author == "dpo"
    assert all(e.fields is None for e in far.history("residents", "3519")[:2])


def test_values_arriving_after_the_order_are_redacted_before_they_are_stored(
    sites: tuple[Replica, Replica, Replica],
) -> None:
    centre, kec, far = sites
    kec.put("residents", "3519", {"name": NAME})
    sync(kec, LoopbackTransport(far, me=kec.id))  # far holds the put whole; the centre does not
    assert _holds(far, NAME)
    centre.erase("residents", "3519", "request 12")
    for bundle in far.pack(since=centre.knowledge()):  # far has not heard of the order
        centre.apply(bundle)  # the put reaches the centre whole, after its order
    put_stream = next(
        x for x in kec.knowledge().streams() if x.origin == kec.id and x.partition[0] == "residents"
    )
    assert centre.knowledge().contains(put_stream, 1)  # held: counted, stored redacted
    assert not _holds(centre, NAME)
    sync(kec, LoopbackTransport(centre, me=kec.id))
    assert not _holds(kec, NAME)
    sync(far, LoopbackTransport(centre, me=far.id))
    assert not _holds(far, NAME)
    assert centre.state_digest() == kec.state_digest() == far.state_digest()


def test_own_unsealed_puts_are_redacted_when_sealed(tmp_path: Path) -> None:
    me = Identity.generate("open")
    with Replica.open(str(tmp_path / "o.db"), identity=me) as site:  # open mode: anyone erases
        site.put("residents", "3519", {"name": NAME})
        site.erase("residents", "3519", "request 12")
        list(site.pack())
        assert not _holds(site, NAME)
        assert site.get("residents", "3519") is None


def test_an_order_from_a_site_that_is_no_authority_is_held_and_erases_nothing(
    tmp_path: Path,
) -> None:
    """A certified site that is no authority writes an order (it runs in open mode, so
    its own replica lets it): a replica with the trust store holds the order with its
    reason and keeps showing the record."""
    auth, rogue_id = Identity.generate("centre"), Identity.generate("rogue")
    from offsync.trust import issue_certificate

    centre = Replica.open(str(tmp_path / "c.db"), identity=auth, trust=[auth.public_key])
    issue_certificate(centre, rogue_id)
    issue_certificate(centre, auth)  # the authority writes records too
    centre.put("residents", "3519", {"name": NAME})
    rogue = Replica.open(str(tmp_path / "r.db"), identity=rogue_id)  # open mode
    for bundle in centre.pack(since=rogue.knowledge()):
        rogue.apply(bundle)
    assert rogue.erase("residents", "3519", "not mine to erase") is not None
    assert not _holds(rogue, NAME)  # its own store: redacted (it admits its own order)
    for bundle in rogue.pack(since=centre.knowledge()):
        centre.apply(bundle)
    held = [q.reason for q in centre.quarantined_changes()]
    assert held == ["trust: not an authority"]
    assert centre.get("residents", "3519") == {"name": NAME}
    assert _holds(centre, NAME)
    centre.close()
    rogue.close()


def test_fork_evidence_is_kept_redacted(tmp_path: Path) -> None:
    """A site restored from a backup signs other changes at seqs it had sent: the
    receiver keeps the second segment as fork evidence; an erasure redacts it too."""
    import shutil

    writer_id = Identity.generate("forked")
    b = Replica.open(str(tmp_path / "b.db"), identity=Identity.generate("b"))  # open mode
    a = Replica.open(str(tmp_path / "a.db"), identity=writer_id)
    a.close()
    shutil.copy(tmp_path / "a.db", tmp_path / "backup.db")
    a = Replica.open(str(tmp_path / "a.db"), identity=writer_id)
    a.put("residents", "3519", {"name": NAME})
    for bundle in a.pack():
        b.apply(bundle)
    a.close()
    restored = Replica.open(str(tmp_path / "backup.db"), identity=writer_id)
    restored.put("residents", "3519", {"name": "Other Unik"})
    for bundle in restored.pack():
        b.apply(bundle)
    restored.close()
    assert b.forks() and b"Other Unik" in b.forks()[0].encode()
    b.erase("residents", "3519", "request 12")
    assert b.forks() and all(b"Other Unik" not in f.encode() for f in b.forks())
    assert b"Other Unik" not in (b.store.get_meta("forks") or b"")
    assert not _holds(b, NAME)
    b.close()
    b = Replica.open(str(tmp_path / "b.db"), identity=b.identity)
    assert all(b"Other Unik" not in f.encode() for f in b.forks())
    b.close()


def test_an_order_admitted_later_erases_then(tmp_path: Path) -> None:
    """An order held for its clock (the receiver's wall clock is a day behind) erases
    nothing while held, and erases when a re-examination admits it."""
    import time

    from offsync.trust import issue_certificate

    auth, clerk = Identity.generate("centre"), Identity.generate("kec")
    trust = [auth.public_key]
    now = [int(time.time() * 1000)]
    centre = Replica.open(str(tmp_path / "c.db"), identity=auth, trust=trust)
    issue_certificate(centre, clerk)
    kec = Replica.open(str(tmp_path / "k.db"), identity=clerk, trust=trust)
    sync(kec, LoopbackTransport(centre, me=kec.id))
    kec.put("residents", "3519", {"name": NAME})
    sync(kec, LoopbackTransport(centre, me=kec.id))
    late = Replica.open(
        str(tmp_path / "l.db"), identity=Identity.generate("late"), trust=trust, wall=lambda: now[0]
    )
    for bundle in kec.pack(since=late.knowledge()):
        late.apply(bundle)
    centre.erase("residents", "3519", "request 12")
    now[0] -= 3 * 24 * 3600 * 1000  # the receiver's clock falls three days behind
    for bundle in centre.pack(since=late.knowledge()):
        late.apply(bundle)
    assert any(q.reason.startswith("clock") for q in late.quarantined())
    assert _holds(late, NAME)  # held orders erase nothing
    now[0] += 3 * 24 * 3600 * 1000
    late.reexamine()
    assert late.get("residents", "3519") is None
    assert not _holds(late, NAME)
    with pytest.raises(UsageError):
        late.put("residents", "3519", {"name": "again"})
    for r in (centre, kec, late):
        r.close()


def test_an_order_from_elsewhere_seals_own_unsealed_puts_redacted(
    sites: tuple[Replica, Replica, Replica],
) -> None:
    """The sub-district wrote the record and has not sealed it; the authority's order
    arrives (the authority never saw the record): the values leave the outbox at once,
    for a redacted segment."""
    centre, kec, _ = sites
    kec.put("residents", "3519", {"name": NAME})
    assert _holds(kec, NAME)  # unsealed: in the outbox
    centre.erase("residents", "3519", "request 12")
    for bundle in centre.pack(since=kec.knowledge()):
        kec.apply(bundle)
    assert kec.get("residents", "3519") is None
    assert not _holds(kec, NAME)
    sync(kec, LoopbackTransport(centre, me=kec.id))
    assert kec.state_digest() == centre.state_digest()


def test_an_erasure_inside_a_batch_seals_when_the_batch_ends(tmp_path: Path) -> None:
    with Replica.open(str(tmp_path / "o.db"), identity=Identity.generate("o")) as site:
        with site.batch(author="clerk-7"):
            site.put("residents", "3519", {"name": NAME})
            site.erase("residents", "3519", "request 13")
            with pytest.raises(UsageError):
                site.put("residents", "3519", {"name": NAME})
        assert not _holds(site, NAME)
        assert [(e.op, e.author) for e in site.history("residents", "3519")] == [
            ("put", "clerk-7"),
            ("erase", "clerk-7"),
        ]
