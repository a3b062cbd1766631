"""Authors in a record's history: each offline edit, with the clerk who entered it,
after a sync through the in-memory transport (docs/integrator-guide.md, "An audit
question answered")."""

from __future__ import annotations

from pathlib import Path

import pytest

from offsync import Replica
from offsync.errors import UsageError
from offsync.identity import Identity
from offsync.schemas import Schema, Schemas
from offsync.sync import sync
from offsync.transports.memory import LoopbackTransport

SCHEMAS = Schemas({"residents": Schema(2, {1: lambda f: {**f, "v2": True}})})


def test_history_lists_every_offline_edit_with_its_author(tmp_path: Path) -> None:
    centre = Replica.open(str(tmp_path / "c.db"), identity=Identity.generate("c"), schemas=SCHEMAS)
    kec = Replica.open(
        str(tmp_path / "k.db"), identity=Identity.generate("k"), author="desk-1", schemas=SCHEMAS
    )
    kec.put("residents", "3519", {"name": "Siti"}, author="clerk-7")
    kec.put("residents", "3519", {"village": "Kare"})  # the replica's author
    with kec.batch(author="clerk-9"):
        kec.put("residents", "3519", {"phone": "0812"})
        kec.delete("residents", "3519", author="supervisor")
    kec.put("residents", "3519", {"name": "Siti A"}, author="clerk-7")
    sync(kec, LoopbackTransport(centre, me=kec.id))
    for site in (centre, kec):
        entries = site.history("residents", "3519")
        assert [(e.op, e.author) for e in entries] == [
            ("put", "clerk-7"),
            ("put", "desk-1"),
            ("put", "clerk-9"),
            ("delete", "supervisor"),
            ("put", "clerk-7"),
        ]
        assert [e.schema for e in entries] == [2] * 5
        assert entries[1].fields == {"village": "Kare"}  # as written, not upcast
    with pytest.raises(UsageError):
        kec.put("residents", "3520", {"name": "x"}, author="")
    with pytest.raises(UsageError):
        kec.put("residents", "3520", {"name": "x"}, author="a" * 65)
    centre.close()
    kec.close()


def test_changes_held_for_their_version_are_listed_held_with_their_author(
    tmp_path: Path,
) -> None:
    centre = Replica.open(str(tmp_path / "c.db"), identity=Identity.generate("c"))  # reads 1
    kec = Replica.open(str(tmp_path / "k.db"), identity=Identity.generate("k"), schemas=SCHEMAS)
    kec.put("residents", "3519", {"name": "Siti"}, author="clerk-7")
    sync(kec, LoopbackTransport(centre, me=kec.id))
    assert centre.history("residents", "3519") == []
    [entry] = centre.history("residents", "3519", held=True)
    assert (entry.author, entry.schema) == ("clerk-7", 2)
    assert entry.reason is not None and entry.reason.startswith("schema: version 2")
    centre.close()
    kec.close()
