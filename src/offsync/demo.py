"""The field demo: a district keeps working while the centre is down.

In a temporary directory, on SQLite: a centre, a district relay and three sub-district
offices, each certified by the centre (the authority) to write records of the district.
While the centre is down the offices record residents and vaccine doses; a record
outside the certificate is refused at the desk. Then
each backlog takes a different road: Saradan's goes by a courier's disk to the district,
Mejayan's through the folder shared with the district, and Wungu's over HTTP straight to
the centre once it is back (a real uvicorn server on a free loopback port). Two offices
record the same person's first dose differently; a district clerk settles the conflict.
An uncertified laptop slips a bundle into the shared folder: every replica holds it in
quarantine and none applies it.
Residents recorded for an ID card carry a photo (a few KB of random bytes standing in
for a JPEG): a blob beside the record, which travels after the records on roads that
carry blobs (HTTP here; the records never wait for it). A village vaccination post,
which needs the names and not the photos, syncs with the centre with ``blobs="none"``.
The centre's receipts travel back the same roads, so every office can see that its
work has arrived. Exits 1 if any replica does not converge.

Run it with ``python -m offsync.demo`` (``./scripts/demo``) or ``offsync demo``.
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import Identity, Replica, policies
from .delivery import Delivery
from .errors import NotAuthorisedError, TransportError
from .knowledge import Knowledge
from .sync import SyncReport, exchange, sync
from .transports import DiskTransport, FolderTransport
from .trust import issue_certificate

__all__ = ["main", "run"]

POLICIES: dict[str, policies.Policy] = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
}
#: The deployment's partition rule: a NIK's first six digits name its district, so a
#: district's residents and doses are one stream per writing site (docs/spec-v3.md §4).
PARTITIONS = {"residents": 6, "doses": 6}
GIVEN = ["Siti", "Budi", "Sri", "Agus", "Dewi", "Eko", "Wahyu", "Rina", "Joko", "Lestari"]
FAMILY = ["Aminah", "Santoso", "Wahyuni", "Prasetyo", "Rahayu", "Hidayat", "Susanti", "Utomo"]
VACCINES = ["CoronaVac", "AstraZeneca", "Pfizer", "Moderna"]
#: The record an uncertified laptop tries to slip in; no replica may show it.
GHOST = "3519019999990001"
#: One resident in this many is recorded for an ID card, with a photo.
PHOTO_EVERY = 6


@dataclass
class Office:
    """One site of the demo and the road its backlog takes."""

    name: str
    role: str
    road: str
    replica: Replica
    region: str = ""

    @property
    def id(self) -> bytes:
        return self.replica.id


def record_backlog(office: Office, residents: int, rng: random.Random) -> list[str]:
    """Residents and their first doses, entered while offline; returns the NIKs."""
    niks = []
    with office.replica.batch():
        for i in range(residents):
            nik = f"{office.region}{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{rng.randint(50, 99):02d}{i + 1:04d}"
            niks.append(nik)
            fields: dict[str, Any] = {
                "name": f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}",
                "village": f"{office.name.split('-')[1].title()} {rng.randint(1, 9)}",
                "recorded_by": office.name,
            }
            if i % PHOTO_EVERY == 0:  # an ID-card recording: its photo, beside the record
                photo = rng.randbytes(rng.randint(2000, 4000))
                fields["photo"] = office.replica.put_blob(photo, "image/jpeg").field()
            office.replica.put("residents", nik, fields)
            if rng.random() < 0.8:
                office.replica.put(
                    "doses",
                    f"{nik}/1",
                    {
                        "vaccine": rng.choice(VACCINES),
                        "date": f"2021-0{rng.randint(3, 9)}-1{rng.randint(0, 9)}",
                        "site": office.name,
                    },
                )
    return niks


def free_loopback_socket() -> socket.socket:
    """A socket bound to a free loopback port, not yet listening (connections fail)."""
    # IPPROTO_TCP, not 0: else asyncio leaves Nagle on (offsync.cli.serve._listen).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see cli/serve.py _listen
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(replica: Replica, sock: socket.socket, **app_options: Any) -> Iterator[str]:
    """Serve ``replica`` with uvicorn on ``sock`` in a thread (``create_app`` with
    ``app_options``); yields the base URL. The benchmarks serve with it too."""
    import uvicorn

    from .server import create_app

    app = create_app(replica, **app_options)
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the demo's HTTP server did not start")
        time.sleep(0.02)
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def http_sync(office: Office, url: str, centre: Office, **options: Any) -> SyncReport:
    from .transports.http import HTTPTransport

    with HTTPTransport(url, office.replica.identity, server_key=centre.id, **options) as t:
        return sync(office.replica, t)


def sent(reports: SyncReport | Sequence[SyncReport]) -> str:
    if isinstance(reports, SyncReport):
        reports = [reports]
    changes = sum(r.sent_changes for r in reports)
    size = sum(r.sent_bytes for r in reports)
    n = sum(r.sent_bundles for r in reports)
    return f"{changes} changes in {n} bundle(s), {size / 1024:.1f} KiB"


def got(reports: SyncReport | Sequence[SyncReport]) -> str:
    if isinstance(reports, SyncReport):
        reports = [reports]
    applied = sum(r.applied for r in reports)
    dup = sum(r.duplicates for r in reports)
    refused = sum(len(r.refused) for r in reports)
    held = sum(r.quarantined for r in reports)
    extra = f", {refused} refused" if refused else ""
    extra += f", {held} held in quarantine" if held else ""
    return f"{applied} changes applied ({dup} duplicates{extra})"


def photos_sent(report: SyncReport) -> str:
    lane = report.blobs
    return (
        f" and {lane.sent} photos ({lane.sent_bytes / 1024:.1f} KiB)" if lane and lane.sent else ""
    )


def photos_got(report: SyncReport) -> str:
    lane = report.blobs
    return f" and {lane.received} photos" if lane and lane.received else ""


def photos(replica: Replica) -> tuple[int, int]:
    """(held, referenced): the distinct photos this replica's records reference, and how
    many of them it holds."""
    referenced = {ref.hash for _, _, ref in replica.blob_references()}
    store = replica.blob_store
    return sum(store.has(h) for h in referenced), len(referenced)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(row: list[str]) -> str:
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(row, widths, strict=True)) + "|"

    return "\n".join([line, fmt(header), line, *(fmt(r) for r in rows), line])


@dataclass
class Scenario:
    """What the scenes share: the sites, the roads between them, what was recorded."""

    say: Callable[[str], None]
    rng: random.Random
    residents: int
    root: Path
    centre: Office
    district: Office
    saradan: Office
    mejayan: Office
    wungu: Office
    post: Office
    #: The courier's USB disk and the district's shared folder.
    disk: Path
    share: Path
    #: The centre's socket, bound while it is down; None once its server has it.
    port: socket.socket | None
    #: The centre's URL, on that port.
    url: str = field(init=False)
    #: The NIKs each sub-district office recorded, by office name.
    niks: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.port is not None
        self.url = "http://{}:{}".format(*self.port.getsockname()[:2])

    @property
    def offices(self) -> list[Office]:
        return [self.centre, self.district, self.saradan, self.mejayan, self.wungu, self.post]


def set_up(root: Path, residents: int, say: Callable[[str], None]) -> Scenario:
    """The six sites' replicas in ``root`` (the centre is the authority), the disk and
    the share, and the centre's port, bound but not listening: the centre is down."""
    authority = Identity.generate(label="pusat")

    def open_office(
        name: str, role: str, road: str, region: str = "", blobs: str = "eager"
    ) -> Office:
        replica = Replica.open(
            str(root / f"{name}.sqlite"),
            identity=authority if name == "pusat" else Identity.generate(label=name),
            policies=POLICIES,
            trust=[authority.public_key],
            blobs=blobs,
            partitions=PARTITIONS,
        )
        return Office(name, role, road, replica, region)

    scenario = Scenario(
        say=say,
        rng=random.Random(2021),
        residents=residents,
        root=root,
        centre=open_office("pusat", "centre", "HTTP server"),
        district=open_office("kab-madiun", "district relay", "disk, folder, HTTP"),
        saradan=open_office("kec-saradan", "sub-district", "courier disk", "351901"),
        mejayan=open_office("kec-mejayan", "sub-district", "shared folder", "351902"),
        wungu=open_office("kec-wungu", "sub-district", "HTTP", "351903"),
        post=open_office("pos-wungu", "vaccination post", "HTTP", "351903", blobs="none"),
        disk=root / "usb-disk",
        share=root / "district-share",
        port=free_loopback_socket(),
    )
    scenario.disk.mkdir()
    scenario.share.mkdir()
    return scenario


def installation_day(sc: Scenario) -> bool:
    sc.say("== Installation day: the centre certifies every site for district 3519 ==")
    sites = sc.offices[1:]
    for office in sites:
        issue_certificate(
            sc.centre.replica,
            office.id,
            label=office.name,
            collections=["residents", "doses"],
            prefixes=["3519"],
        )
    certificates = sc.centre.replica.pack()
    for office in sites:
        for bundle in certificates:
            office.replica.apply(bundle)
    sc.say(f"  {len(sites)} certificates, signed by the centre, installed everywhere")
    return True


def centre_down(sc: Scenario) -> bool:
    """The offices record their backlogs, a dose twice, and try what they may not."""
    sc.say("== The centre is down. The sub-district offices keep working. ==")
    for office in (sc.saradan, sc.mejayan, sc.wungu):
        sc.niks[office.name] = record_backlog(office, sc.residents, sc.rng)
        n_photos = len(office.replica.blob_store.blobs())
        sc.say(
            f"  {office.name}: {office.replica.seq} changes recorded offline,"
            f" {n_photos} ID-card photos"
        )
    record_one_dose_twice(sc)
    return turned_away(sc)


def record_one_dose_twice(sc: Scenario) -> None:
    """A Saradan resident gets her first dose in Mejayan, and Saradan records it too."""
    saradan, mejayan = sc.saradan.replica, sc.mejayan.replica
    shared_nik = sc.niks["kec-saradan"][0]
    dose = f"{shared_nik}/1"
    if saradan.get("doses", dose) is None:
        saradan.put("doses", dose, {"vaccine": "CoronaVac", "date": "2021-03-02"})
    other = "Pfizer" if saradan.get("doses", dose) != {"vaccine": "Pfizer"} else "Moderna"
    mejayan.put("doses", dose, {"vaccine": other, "date": "2021-03-03", "site": sc.mejayan.name})
    sc.say(f"  both Saradan and Mejayan recorded dose 1 of resident {shared_nik}")


def turned_away(sc: Scenario) -> bool:
    """Kec-wungu tries what it cannot do: write outside its certificate, and reach the
    centre while it is down. False if either worked."""
    try:
        sc.wungu.replica.put("residents", "3578010101900001", {"name": "visitor from Surabaya"})
    except NotAuthorisedError as exc:
        sc.say(f"  kec-wungu tries to register a Surabaya NIK: refused at the desk ({exc})")
    else:
        sc.say("  kec-wungu wrote outside its certificate")
        return False
    try:
        http_sync(sc.wungu, sc.url, sc.centre, max_retries=0, connect_timeout=2)
    except TransportError as exc:
        sc.say(f"  kec-wungu tries the centre: {type(exc).__name__}; it keeps working offline")
    else:
        sc.say("  kec-wungu reached a centre that should be down")
        return False
    return True


def courier_disk(sc: Scenario) -> bool:
    sc.say("== Courier: Saradan's backlog goes to the district on a USB disk ==")
    with DiskTransport(sc.disk, sc.saradan.replica, sc.district.replica) as courier:
        report = sync(sc.saradan.replica, courier)
    sc.say(f"  kec-saradan exports {sent(report)}, sealed to the district's key")
    stop = exchange(sc.district.replica, sc.disk)
    sc.say(f"  kab-madiun imports: {got(stop.imported)}; writes the return trip")
    return True


def shared_folder(sc: Scenario) -> bool:
    """Mejayan's backlog, and an uncertified laptop's bundle, through the share."""
    sc.say("== Shared folder: Mejayan's backlog goes through the district share ==")
    district, mejayan = sc.district.replica, sc.mejayan.replica
    with FolderTransport(sc.share, mejayan, district) as out:
        report = sync(mejayan, out)
    sc.say(f"  kec-mejayan leaves {sent(report)} in the share")
    stranger = Replica.open(
        str(sc.root / "stranger.sqlite"),
        identity=Identity.generate(label="stranger"),
        partitions=PARTITIONS,
    )
    try:
        stranger.put("residents", GHOST, {"name": "ghost resident"})
        with FolderTransport(sc.share, stranger, district) as out:
            sync(stranger, out)
    finally:
        stranger.close()
    sc.say("  an uncertified laptop on the network also leaves a bundle in the share")
    with FolderTransport(sc.share, district, mejayan) as inbox:
        report = sync(district, inbox)
    sc.say(f"  kab-madiun picks them up: {got(report)}")
    return True


def conflict(sc: Scenario) -> bool:
    """The district clerk settles the dose recorded twice."""
    sc.say("== A conflict: two offices recorded the same dose differently ==")
    district = sc.district.replica
    conflicts = district.conflicts()
    for c in conflicts:
        versions = sorted(str((v or {}).get("vaccine")) for v in c.versions.values())
        sc.say(
            f"  {c.collection}/{c.key}: versions {', '.join(versions)}; standing: {(c.current or {}).get('vaccine')}"
        )
    if len(conflicts) != 1:
        sc.say(f"  expected one conflict at the district, found {len(conflicts)}")
        return False
    [settled] = conflicts
    standing = dict(settled.current or {})
    standing["note"] = "checked against the paper card by the district clerk"
    district.resolve(settled.collection, settled.key, standing)
    sc.say(
        f"  the district clerk keeps the {standing.get('vaccine')} record (checked against the card)"
    )
    return True


def centre_back(sc: Scenario) -> bool:
    """The centre serves over HTTP: the relay, Wungu with its photos, and the post
    (``blobs="none"``: names, not photos) sync with it."""
    sc.say(f"== The centre is back: {sc.url} (uvicorn) ==")
    assert sc.port is not None
    district, wungu, post, centre = sc.district, sc.wungu, sc.post, sc.centre
    with serving(centre.replica, sc.port) as base:
        sc.port = None  # closed by the server
        report = http_sync(district, base, centre)
        sc.say(f"  kab-madiun uploads {sent(report)}")
        report = http_sync(wungu, base, centre)
        sc.say(f"  kec-wungu uploads {sent(report)}{photos_sent(report)}; downloads {got(report)}")
        with post.replica.batch():  # second doses, given at the village post
            for nik in sc.niks["kec-wungu"][:20]:
                post.replica.put("doses", f"{nik}/2", {"vaccine": "Pfizer", "date": "2021-10-04"})
        report = http_sync(post, base, centre)
        sc.say(f"  pos-wungu uploads {sent(report)}; downloads {got(report)}")
        report = http_sync(district, base, centre)
        sc.say(f"  kab-madiun downloads {got(report)}{photos_got(report)} and the centre's receipt")
        http_sync(wungu, base, centre)
        http_sync(post, base, centre)
        names = sum(1 for _ in post.replica.items("residents"))
        no_photos = post.replica.missing_blobs().count
        sc.say(
            f"  pos-wungu holds the names of {names} residents and none of their"
            f" {no_photos} photos (blobs=none: it needs names, not photos)"
        )
    return True


def receipts_travel_back(sc: Scenario) -> bool:
    """The district relays the centre's receipts down the share and the disk."""
    sc.say("== Receipts travel back ==")
    district, mejayan, saradan = sc.district.replica, sc.mejayan.replica, sc.saradan.replica
    with FolderTransport(sc.share, district, mejayan) as out:
        sync(district, out)
    with FolderTransport(sc.share, mejayan, district) as inbox:
        report = sync(mejayan, inbox)
    sc.say(f"  kec-mejayan reads the share: {got(report)}")
    exchange(district, sc.disk, [saradan])
    with DiskTransport(sc.disk, saradan, district) as inbox:
        report = sync(saradan, inbox, push=False)
    sc.say(f"  the courier brings the disk back to kec-saradan: {got(report)}")
    return True


#: The scenario, in order; a scene returns False when what it shows did not happen.
SCENES: tuple[Callable[[Scenario], bool], ...] = (
    installation_day,
    centre_down,
    courier_disk,
    shared_folder,
    conflict,
    centre_back,
    receipts_travel_back,
)


def run(root: Path, residents: int = 300, say: Callable[[str], None] = print) -> bool:
    """Play the scenario in ``root``; True when every replica converged."""
    sc = set_up(root, residents, say)
    try:
        if not all(scene(sc) for scene in SCENES):
            return False
        return report_table(sc.offices, sc.centre, say)
    finally:
        if sc.port is not None:
            sc.port.close()
        for office in sc.offices:
            office.replica.close()


#: The columns of the final table, one row a site.
COLUMNS = [
    "site",
    "role",
    "road",
    "written",
    "held",
    "at centre",
    "knows it",
    "conflicts",
    "quarantined",
    "photos",
    "state digest",
]


def report_table(offices: list[Office], centre: Office, say: Callable[[str], None]) -> bool:
    """Print a row a site and the centre's totals; True when every replica converged."""
    centre_knowledge = centre.replica.knowledge()
    digests = {o.name: o.replica.state_digest() for o in offices}
    ok = len(set(digests.values())) == 1
    rows = []
    for o in offices:
        row, arrived = site_row(o, centre, centre_knowledge, digests[o.name])
        ok = ok and arrived
        rows.append(row)
    say("")
    say(table(rows, COLUMNS))
    at_centre, recorded = photos(centre.replica)
    say(
        f"photos at the centre: {at_centre} of {recorded} recorded (blobs travel on roads"
        " that carry them: HTTP here; a post with blobs=none fetches none)"
    )
    total = sum(o.replica.seq for o in offices)
    reached = sum(centre_knowledge.restrict_origins([o.id]).count() for o in offices)
    refused = centre_knowledge.count() - reached
    say(
        f"centre holds {reached} of {total} changes written"
        + (f" (and {refused} refused change(s), held in quarantine)" if refused else "")
        + "; "
        + ("every replica has the same state digest." if ok else "NOT CONVERGED.")
    )
    return ok


def site_row(
    o: Office, centre: Office, centre_knowledge: Knowledge, digest: bytes
) -> tuple[list[str], bool]:
    """A site's row of ``COLUMNS``, and whether all it wrote reached the centre, it
    knows so, it has no conflict left and it never applied the ghost."""
    rep = o.replica
    written = rep.seq
    at_centre = centre_knowledge.restrict_origins([o.id]).count()
    known = "yes" if o is centre or Delivery(rep, [centre.id]).reached_centre() else "no"
    conflicts = len(rep.conflicts())
    held_photos, referenced = photos(rep)
    arrived = at_centre == written and known == "yes" and conflicts == 0
    arrived = arrived and rep.get("residents", GHOST) is None
    row = [
        o.name,
        o.role,
        o.road,
        str(written),
        str(rep.knowledge().count()),
        f"{at_centre}/{written}",
        known,
        str(conflicts),
        str(len(rep.quarantined_changes())),
        f"{held_photos}/{referenced}",
        digest.hex()[:16],
    ]
    return row, arrived


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="offsync demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=300, help="residents per office")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it afterwards")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.keep:
        root = Path(args.keep)
        root.mkdir(parents=True, exist_ok=False)
        converged = run(root, args.residents)
    else:
        with tempfile.TemporaryDirectory(prefix="offsync-demo-") as tmp:
            converged = run(Path(tmp), args.residents)
    print(f"({time.monotonic() - started:.1f} s)")
    return 0 if converged else 1


if __name__ == "__main__":
    sys.exit(main())
