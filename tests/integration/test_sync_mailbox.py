"""The sync layer's drivers for mailboxes (``offsync.sync.exchange``, ``exchange_folder``),
and where drivers and transport choices live: the sync layer and
``offsync.transports.open_transport``, not a transport, not the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import offsync
from offsync import Identity, Replica, sync
from offsync.bundle import peek_header
from offsync.errors import TransportError, UsageError
from offsync.scope import Partition, Stream
from offsync.sync import ExchangeReport, exchange, exchange_folder
from offsync.transports import DiskTransport, FolderTransport
from offsync.transports.folder import outbox_name

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

SRC = Path(offsync.__file__).parent


def replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label=label))


def outbox(share: Path, site: Replica) -> list[Path]:
    return sorted((share / outbox_name(site.id)).glob("*.ofb"))


def test_a_stop_at_a_folder_answers_who_left_mail(tmp_path: Path) -> None:
    """Two sub-districts leave their changes for the district; the district's stop takes
    them and answers both (no peer named); their next stops bring its receipt back."""
    share = tmp_path / "share"
    share.mkdir()
    district, kare, wungu = replica("district"), replica("kare"), replica("wungu")
    for n, site in enumerate((kare, wungu)):
        site.put("residents", f"35190{n}", {"name": site.identity.label})
        stop = exchange_folder(site, share, [district])
        assert [r.peer for r in stop.replies] == [district.id]
    stop = exchange_folder(district, share)
    assert isinstance(stop, ExchangeReport) and stop.ok
    assert stop.imported.applied == 2 and stop.applied == 2
    assert {r.peer for r in stop.replies} == {kare.id, wungu.id}
    assert str(stop).startswith("imported from the folder: 2 changes applied")
    for site in (kare, wungu):
        back = exchange_folder(site, share)
        assert back.imported.received  # the district's reply, with its receipt
        assert site.receipts()[district.id].knowledge.contains(
            Stream(site.id, RESIDENTS_PARTITION), 1
        )


def test_a_folder_stop_may_hold_its_replies(tmp_path: Path) -> None:
    """``may_reply`` is asked after the import: False leaves nothing in the folder."""
    share = tmp_path / "share"
    share.mkdir()
    district, kare = replica("district"), replica("kare")
    kare.put("residents", "3519", {"name": "Siti"})
    exchange_folder(kare, share, [district])
    asked: list[int] = []

    def may_reply() -> bool:
        asked.append(district.get("residents", "3519") is not None)  # after the import
        return False

    stop = exchange_folder(district, share, may_reply=may_reply)
    assert asked == [True] and stop.imported.applied == 1 and stop.replies == []
    assert outbox(share, kare) == [] and outbox(share, district) == []


def test_a_folder_stop_seals_replies_when_asked(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    district, kare = replica("district"), replica("kare")
    exchange_folder(kare, share, [district], encrypt=True)
    [left] = outbox(share, district)
    header = peek_header(left.read_bytes())
    assert header.recipient == district.id


def test_a_folder_stop_that_cannot_write_raises_and_keeps_the_import(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    district, kare = replica("district"), replica("kare")
    kare.put("residents", "3519", {"name": "Siti"})
    exchange_folder(kare, share, [district])
    (share / outbox_name(kare.id)).write_text("not a directory")  # no outbox for kare
    with pytest.raises(TransportError, match="Not a directory"):
        exchange_folder(district, share)
    assert district.get("residents", "3519") == {"name": "Siti"}


def test_stops_refuse_what_cannot_be_opened_before_reading(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    district, kare = replica("district"), replica("kare")
    kare.put("residents", "3519", {"name": "Siti"})
    exchange_folder(kare, share, [district])
    with pytest.raises(UsageError, match="assume_free_bytes: not an option of a folder"):
        exchange_folder(district, share, assume_free_bytes=0)
    with pytest.raises(UsageError, match="nor a folder"):
        exchange_folder(district, tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="timeout: not an option of a disk"):
        exchange(district, share, timeout=3)
    with pytest.raises(TransportError, match="no disk mounted"):
        exchange(district, tmp_path / "usb")
    assert len(outbox(share, district)) == 1  # nothing was read
    assert district.get("residents", "3519") is None


def test_the_courier_stop_reports_replies_it_could_not_write(tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    district, kare = replica("district"), replica("kare")
    kare.put("residents", "3519", {"name": "Siti"})
    with DiskTransport(usb, kare, district) as t:
        sync(kare, t)
    stop = exchange(district, usb, free_space=lambda _: 0)
    assert stop.applied == 1 and stop.replies == []
    assert [n.peer for n in stop.not_written] == [kare.id] and not stop.ok
    assert str(stop).startswith("imported from the disk: 1 changes applied")


# -- where the drivers and the choice of transport live ------------------------------------


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions too),
    as absolute names."""
    package = ".".join(("offsync", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            prefix = ".".join(base) if node.level else ""
            module = ".".join(p for p in (prefix, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_import_scan_resolves_relative_imports() -> None:
    assert "offsync.sync.rounds.sync" in imports(SRC / "sync" / "mailbox.py")
    assert "offsync.transports.locations" in imports(SRC / "sync" / "mailbox.py")


#: (transport module, what it may import of the replica layer) -> why.
REPLICA_ALLOWED = {
    ("memory.py", "offsync.replica"): "a type only: LoopbackTransport's other side is a "
    "replica object, as a server's is",
    ("memory.py", "offsync.replica.Replica"): "the same",
}


@pytest.mark.parametrize("path", sorted((SRC / "transports").glob("*.py")), ids=lambda p: p.name)
def test_transports_know_nothing_of_rounds_or_replicas(path: Path) -> None:
    """A transport moves bundles; driving rounds over it is the sync layer's job."""
    bad = {
        m
        for m in imports(path)
        if m.startswith(("offsync.sync", "offsync.replica"))
        and (path.name, m) not in REPLICA_ALLOWED
    }
    assert bad == set()


def test_importing_the_transports_loads_no_replica_and_no_driver() -> None:
    """Without ``offsync/__init__.py`` (which imports every layer), importing the
    transports loads neither the replica nor the sync layer."""
    code = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('offsync')\n"
        "package = types.ModuleType('offsync')\n"
        "package.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['offsync'] = package\n"
        "import offsync.transports\n"
        "print(sorted(m for m in ('offsync.replica', 'offsync.sync') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_chooses_no_transport_itself() -> None:
    """The CLI opens transports through ``open_transport`` and runs stops through the
    sync layer's drivers; it names no transport class."""
    classes = {"FolderTransport", "DiskTransport", "HTTPTransport"}
    for path in sorted((SRC / "cli").glob("*.py")):
        named = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
        named |= {m.rsplit(".", 1)[-1] for m in imports(path)}
        assert named & classes == set(), path.name
    assert FolderTransport.__module__ == "offsync.transports.folder"
