"""Layers: only the replica and the stores touch a replica's store.

Everything else (delivery status, attestations, the command line, the server) asks the
replica, which takes its lock and sees its state as one value.
"""

from __future__ import annotations

import re
from pathlib import Path

import offsync
from offsync import Identity, Replica, attest
from offsync.change import ChangeId
from offsync.delivery import Delivery, Status

SRC = Path(offsync.__file__).parent
ALLOWED: set[str] = set()


def test_nothing_outside_the_replica_and_the_stores_reads_a_replicas_store() -> None:
    reads = re.compile(r"\w+\.store\b(?:\.\w+)?")
    offenders = [
        f"{p.relative_to(SRC)}: {m.group(0)}"
        for p in sorted(SRC.rglob("*.py"))
        if p.relative_to(SRC).parts[0] not in ("replica", "stores")
        for m in reads.finditer(p.read_text())
        if m.group(0) not in ALLOWED
    ]
    assert offenders == []


def test_collections_and_record_changes_answer_what_the_store_holds() -> None:
    rep = Replica.open(":memory:", identity=Identity(bytes([4]) * 32, label="kec"))
    first = rep.put("residents", "3519010101900001", {"name": "Siti"})
    second = rep.put("residents", "3519010101900001", {"village": "Kare"})
    rep.put("residents", "3519010101900002", {"name": "Budi"})
    rep.put("doses", "3519010101900002/1", {"vaccine": "X"})
    rep.delete("doses", "3519010101900002/1")
    assert rep.collections() == {"residents": 2}  # deleted records are not counted
    changes = rep.record_changes("residents", "3519010101900001")
    assert sorted(c.id for c in changes) == [first, second]
    assert changes[0].collection == "residents"
    assert rep.record_changes("residents", "nobody") == []
    # What delivery status and attestations are built on.
    assert Delivery(rep, []).record_status("residents", "3519010101900001") is Status.LOCAL
    assert attest(rep, "residents", "3519010101900001")
    assert ChangeId(rep.id, 2) == second
    rep.close()
