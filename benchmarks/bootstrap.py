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
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from offsync import Identity, Replica  # noqa: E402
from offsync.scope import PartitionRule, Scope  # noqa: E402
from offsync.trust import issue_certificate  # noqa: E402

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
_PROVINCE_CODES = ["35", "33", "32", "51"]
_REGENCY_CODES = ["19", "07", "15", "24", "02"]
_NAMES = "Siti Budi Agus Dewi Sri Ahmad Nur Rina Eko Wahyu Joko Ani Yanti Slamet Endang Heru"
_GIVEN = _NAMES.split()
_FAMILY = "Santoso Wibowo Susanti Rahayu Setiawan Hidayat Pratama Kurniawan Saputra".split()
_VILLAGES = "Kare Klecorejo Sumberbening Bajulan Sugihwaras Ketandan Pajaran Sumbersari".split()


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
    """A resident and their dose (deterministic in ``district``, ``i`` and ``version``)."""
    key = nik(district, i)
    h = int.from_bytes(hashlib.blake2b(f"{key}/{version}".encode(), digest_size=8).digest())
    resident = {
        "name": f"{_GIVEN[h % 16]} {_FAMILY[(h >> 4) % 9]}",
        "born": f"19{key[10:12]}-{key[8:10]}-{int(key[6:8]) % 40:02d}",
        "sex": "F" if int(key[6:8]) > 40 else "M",
        "village": _VILLAGES[(h >> 8) % 8],
        "address": f"Jl. Merdeka No. {(h >> 12) % 200 + 1}, RT {(h >> 20) % 9 + 1:02d}",
        "family_card": f"{district}{(h >> 24) % 10**10:010d}",
        "version": version,
    }
    dose = {"vaccine": "MR", "lot": f"L{(h >> 40) % 50:03d}", "date": "2026-11-0" + str(h % 9 + 1)}
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
