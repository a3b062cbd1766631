"""Bootstrap a scoped site from a large centre, over HTTP and by courier disk.

    .venv/bin/python benchmarks/bootstrap.py --quick            # 200k-record centre
    .venv/bin/python benchmarks/bootstrap.py --scopes 10k,100k  # 2M-record centre

Issue 12, point 4: a new site whose scope holds 10k / 100k / 500k records bootstraps
from a centre that holds 2,000,000, and the bytes on the wire follow the scope, not
the centre. The centre holds ``residents`` and ``doses`` keyed by NIK (one dose per
resident), partition rule ``residents=6, doses=6`` (the NIK's district), laid out so
that one district holds 1/200 of the records, one regency (``3519``) 1/20 and one
province (``35``) 1/4: the three scopes. It is built once with ``Replica.put_many``
and kept in ``--workdir`` (``centre-<n>.db``), so reruns skip building it.

Per scope and path, end to end (a fresh site file until it holds its scope):

* **http**: a real ``offsync`` server (uvicorn) on loopback serving the centre in trust
  mode; the site holds a certificate whose read scope is its scope, and runs
  ``offsync.sync`` rounds over ``HTTPTransport`` until one moves nothing. Bytes: the
  pull answers' bundle bytes (what the server sent).
* **disk**: the centre exports for that site to a courier disk (a folder), the site
  imports it. Bytes: the bundle files on the disk.

The ratio columns compare bytes/scope-record with bytes/centre-record: proportional to
the scope means bytes/scope-record stays flat as the scope grows, and the total is far
below the centre's. The incremental case: after bootstrap of the smallest scope the
centre writes 1,000,000 records elsewhere and 100 in the scope; the site's next round
moves about the 100. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from offsync import Identity, Replica  # noqa: E402
from offsync.scope import PartitionRule, Scope  # noqa: E402
from offsync.trust import issue_certificate  # noqa: E402
from registry_data import (  # noqa: E402
    _FAMILY,
    _GIVEN,
    _MARITAL,
    _OCCUPATIONS,
    _PLACES,
    _RELIGION_WEIGHTS,
    _RELIGIONS,
    _SITES,
    _STREETS,
    _VACCINES,
    _VILLAGES,
)

RULE = PartitionRule({"residents": 6, "doses": 6})
AUTHORITY = Identity(hashlib.sha256(b"bootstrap authority").digest(), "authority")
CENTRE = Identity(hashlib.sha256(b"bootstrap centre").digest(), "centre")
#: One person is two records (a resident, a dose); a district holds 1/200 of them.
DISTRICTS_PER_REGENCY = 10
REGENCIES_PER_PROVINCE = 5
PROVINCES = 4
#: The scopes, by how much of the centre they hold: a district, a regency, a province.
PREFIXES = {"district": "351901", "regency": "3519", "province": "35"}
SHARE = {"district": 1 / 200, "regency": 1 / 20, "province": 1 / 4}


def scope_of(name: str) -> Scope:
    return Scope({"residents": [PREFIXES[name]], "doses": [PREFIXES[name]]})


CHUNK = 100_000
#: The generator's version, in the cached files' names (another generator: other files).
DATA = "r2"
_PROVINCE_CODES = ["35", "33", "32", "51"]
_REGENCY_CODES = ["19", "07", "15", "24", "02"]


def districts() -> list[str]:
    """Every district code of the centre, in order: 4 provinces x 5 regencies x 10."""
    return [
        f"{p}{r}{d + 1:02d}"
        for p in _PROVINCE_CODES[:PROVINCES]
        for r in _REGENCY_CODES[:REGENCIES_PER_PROVINCE]
        for d in range(DISTRICTS_PER_REGENCY)
    ]


def nik(district: str, i: int) -> str:
    """A NIK: district, birth date (DDMMYY, day + 40 for women), serial (unique per i)."""
    day, month, year = 1 + i % 28, 1 + (i // 28) % 12, (i * 7) % 100
    day += 40 * (i % 2)
    return f"{district}{day:02d}{month:02d}{year:02d}{i:04d}"


def person(district: str, i: int, version: int = 0) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A resident and their dose, with ``registry_data``'s fields (names, address,
    religion, occupation, family card, vaccine batch: as varied as a registry's, so the
    bytes per record are a registry's, not a toy's), deterministic in ``district``,
    ``i`` and ``version``."""
    key = nik(district, i)
    rng = random.Random(f"{key}/{version}")
    year = 1900 + int(key[10:12]) if int(key[10:12]) > 25 else 2000 + int(key[10:12])
    resident = {
        "name": f"{rng.choice(_GIVEN)} {rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
        "sex": "P" if int(key[6:8]) > 40 else "L",
        "birth_place": rng.choice(_PLACES),
        "birth_date": f"{year:04d}-{key[8:10]}-{int(key[6:8]) % 40:02d}",
        "address": {
            "street": f"Jl. {rng.choice(_STREETS)} No. {rng.randint(1, 250)}",
            "rt": f"{rng.randint(1, 30):03d}",
            "rw": f"{rng.randint(1, 12):03d}",
            "village": rng.choice(_VILLAGES),
            "district": district,
            "postal_code": f"6{rng.randint(1000, 9999)}",
        },
        "religion": rng.choices(_RELIGIONS, _RELIGION_WEIGHTS)[0],
        "marital_status": rng.choice(_MARITAL),
        "occupation": rng.choice(_OCCUPATIONS),
        "family_card": f"{district}{rng.randint(0, 10**10 - 1):010d}",
        "version": version,
    }
    vaccine = rng.choice(_VACCINES)
    dose = {
        "vaccine": vaccine,
        "date": f"2021-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "batch": f"{vaccine[:2].upper()}{rng.randint(100000, 999999)}",
        "site": rng.choice(_SITES),
        "dose": 1,
    }
    return key, resident, dose


def people(total: int) -> Iterator[tuple[str, int]]:
    """(district, i) for every person of a centre of ``total`` records."""
    per_district = total // 2 // len(districts())
    for d in districts():
        for i in range(per_district):
            yield d, i


def build_centre(path: Path, total: int) -> float:
    """Write a centre of ``total`` records (half residents, half doses) at ``path``."""
    started = time.perf_counter()
    tmp = path.with_suffix(".building")
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    with Replica.open(str(tmp), identity=CENTRE, trust=[AUTHORITY.public], partitions=RULE) as c:
        _certify(c)
        batch: list[tuple[str, int]] = []
        for item in people(total):
            batch.append(item)
            if len(batch) == CHUNK // 2:
                _write(c, batch)
                batch = []
        if batch:
            _write(c, batch)
    tmp.rename(path)
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()  # the store's lock file, left beside the old name
    return time.perf_counter() - started


def site_identity(name: str) -> Identity:
    return Identity(hashlib.sha256(b"bootstrap site " + name.encode()).digest(), name)


def _certify(centre: Replica) -> None:
    """The authority certifies the centre (everything) and one site per scope, whose
    read scope is its write scope (its district, regency or province)."""
    with Replica.open(
        ":memory:", identity=AUTHORITY, trust=[AUTHORITY.public], partitions=RULE
    ) as authority:
        issue_certificate(authority, CENTRE, label="centre")
        for name, prefix in PREFIXES.items():
            issue_certificate(
                authority,
                site_identity(name),
                label=name,
                collections=["residents", "doses"],
                prefixes=[prefix],
            )
        for bundle in authority.pack(centre.knowledge()):
            centre.apply(bundle)


def _write(centre: Replica, batch: list[tuple[str, int]], version: int = 0) -> None:
    residents, doses = {}, {}
    for d, i in batch:
        key, resident, dose = person(d, i, version)
        residents[key] = resident
        doses[key] = dose
    centre.put_many("residents", residents)
    centre.put_many("doses", doses)


def centre_file(workdir: Path, total: int, say: Any = print) -> Path:
    """The cached centre of ``total`` records (built on first use)."""
    path = workdir / f"centre-{total}-{DATA}.db"
    if not path.exists():
        say(f"building a centre of {total:,} records in {path} (once) ...")
        say(f"  built in {build_centre(path, total):.0f} s")
    seal(path)
    return path


def seal(path: Path) -> None:
    """Seal the tails ``put_many`` leaves in the outbox (a segment's worth per stream):
    a live centre sealed them long ago, so neither the first bootstrap's time nor a
    copy that writes more before sealing (a different cut of the same seqs) shows it."""
    with Replica.open(str(path), identity=CENTRE, trust=[AUTHORITY.public], partitions=RULE) as c:
        if c.has_unsealed():
            c.pack(c.knowledge())  # packing seals first; nothing is missing


def incremental_centre(workdir: Path, total: int, elsewhere: int, say: Any = print) -> Path:
    """The centre after ``elsewhere`` new records outside every scope (province 51's
    new regency 5199) and 100 corrections in the district (cached too)."""
    path = workdir / f"centre-{total}-{DATA}-plus-{elsewhere}.db"
    if path.exists():
        return path
    say(f"writing {elsewhere:,} records elsewhere and 100 in the district (once) ...")
    started = time.perf_counter()
    tmp = path.with_suffix(".building")
    shutil.copyfile(centre_file(workdir, total, say), tmp)
    with Replica.open(str(tmp), identity=CENTRE, trust=[AUTHORITY.public], partitions=RULE) as c:
        batch: list[tuple[str, int]] = []
        for n in range(elsewhere // 2):
            batch.append((f"5199{n // 5000 % 100:02d}", n))
            if len(batch) == CHUNK // 2:
                _write(c, batch)
                batch = []
        if batch:
            _write(c, batch)
        _write(c, [(PREFIXES["district"], i) for i in range(50)], version=1)  # 100 records
        c.pack(c.knowledge())  # sealed, as a live centre's are
    tmp.rename(path)
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    say(f"  written in {time.perf_counter() - started:.0f} s")
    return path


def fresh_copy(path: Path, to: Path) -> Path:
    """A copy of a cached centre for one run: serving and exporting write to the
    centre's store (what each site said it holds), which must not leak into the next."""
    for old in to.parent.glob(to.name + "*"):
        old.unlink()
    shutil.copyfile(path, to)
    return to


def open_site(path: Path, name: str) -> Replica:
    return Replica.open(
        str(path),
        identity=site_identity(name),
        trust=[AUTHORITY.public],
        partitions=RULE,
        scope=scope_of(name),
    )


def over_http(centre_path: Path, site_path: Path, name: str) -> tuple[float, int, int]:
    """Sync a site over HTTP until a round brings nothing: (seconds, bundle bytes
    received, changes applied)."""
    from offsync.demo import free_loopback_socket, serving
    from offsync.sync import sync
    from offsync.transports.http import HTTPTransport

    with (
        Replica.open(
            str(centre_path), identity=CENTRE, trust=[AUTHORITY.public], partitions=RULE
        ) as centre,
        serving(centre, free_loopback_socket()) as url,
        open_site(site_path, name) as site,
    ):
        started = time.perf_counter()
        size = changes = 0
        with HTTPTransport(url, site.identity, server_key=CENTRE.public_key) as t:
            while True:
                report = sync(site, t)
                size += report.received_bytes
                moved = sum(r.applied + r.unlocked for r in report.received)
                changes += moved
                if not moved:
                    break
        return time.perf_counter() - started, size, changes


def by_disk(centre_path: Path, site_path: Path, disk: Path, name: str) -> tuple[float, int, int]:
    """The centre exports for the site onto a courier disk, the site imports it:
    (seconds for both, bytes written to the disk, changes applied)."""
    from offsync.sync import sync
    from offsync.transports import DiskTransport

    shutil.rmtree(disk, ignore_errors=True)
    disk.mkdir(parents=True)
    started = time.perf_counter()
    with Replica.open(
        str(centre_path), identity=CENTRE, trust=[AUTHORITY.public], partitions=RULE
    ) as centre:
        peer = site_identity(name).public
        with DiskTransport(disk, centre, peer) as t:
            sent = sync(centre, t, pull=False)
    with open_site(site_path, name) as site, DiskTransport(disk, site, CENTRE.public) as t:
        got = sync(site, t, push=False)
    took = time.perf_counter() - started
    return took, sent.sent_bytes, sum(r.applied + r.unlocked for r in got.received)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 200,000-record centre")
    parser.add_argument("--records", type=int, help="records in the centre (default 2M)")
    parser.add_argument(
        "--scopes", default="district,regency,province", help="which of the three scopes"
    )
    parser.add_argument("--paths", default="http,disk", help="http, disk or both")
    parser.add_argument("--no-incremental", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/offsync-bootstrap"))
    args = parser.parse_args(argv)
    total = args.records or (200_000 if args.quick else 2_000_000)
    elsewhere = total // 2
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    centre_path = centre_file(workdir, total)
    size = centre_path.stat().st_size
    runs = workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    print(f"centre: {total:,} records, {size / 2**20:.0f} MiB on disk")
    header = "| scope | records | path | seconds | bytes | B/scope-record | B/centre-record |"
    print(header)
    print("|---|---:|---|---:|---:|---:|---:|")
    short = False
    for name in args.scopes.split(","):
        held = round(total * SHARE[name])
        for path in args.paths.split(","):
            site_path = runs / f"{name}-{path}.db"
            centre_path = fresh_copy(centre_file(workdir, total), runs / "centre.db")
            if path == "http":
                took, size, changes = over_http(centre_path, site_path, name)
            else:
                took, size, changes = by_disk(centre_path, site_path, runs / "disk", name)
            print(
                f"| {name} {PREFIXES[name]} | {held:,} | {path} | {took:.1f} | {size:,} |"
                f" {size / held:.1f} | {size / total:.2f} |",
                flush=True,
            )
            if changes < held:
                print(f"  ! {changes} changes applied, fewer than the scope's {held}")
                short = True
    if not args.no_incremental:
        name = args.scopes.split(",")[0]
        base = runs / f"{name}-http.db"
        if not base.exists():
            over_http(fresh_copy(centre_path, runs / "centre.db"), base, name)
        incr = fresh_copy(incremental_centre(workdir, total, elsewhere), runs / "centre.db")
        took, size, changes = over_http(incr, base, name)
        print(
            f"incremental: {changes} changes in scope among {elsewhere:,} elsewhere:"
            f" {size:,} bytes, {took:.2f} s"
        )
        short = short or changes != 100
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
