"""A deterministic generator of civil-registry-like records for the benchmarks.

One person is one ``residents`` record keyed by a 16-digit NIK (the Indonesian civil
ID: a 6-digit region code — province, regency, district — then the birth date as
DDMMYY with 40 added to the day for women, then a 4-digit serial), plus 0-3
``doses`` records keyed ``NIK/dose-number``. Every record is one change. The same
``seed`` and ``district`` always give the same records in the same order, so every
scenario and every baseline of a run works on exactly the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

__all__ = ["DISTRICT", "Record", "records"]

#: Region code of the generated site: Jawa Timur (35), Kab. Madiun (19), Kec. Saradan (01).
DISTRICT = "351901"

Record = tuple[str, str, dict[str, Any]]  # (collection, key, fields)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_GIVEN = _words(
    "Siti Budi Agus Dewi Sri Ahmad Muhammad Nur Rina Eko Wahyu Joko Tri Dwi Ani Yanti Slamet "
    "Sutrisno Suparmi Endang Heru Bambang Rudi Indah Fitri Putri Rizky Dimas Aditya Bayu Lestari "
    "Ratna Wulan Hendra Teguh Sugeng Purwanto Kartini Sumarni Winarsih Ayu Fajar Gilang Intan"
)
_FAMILY = _words(
    "Aminah Santoso Wibowo Susanti Rahayu Setiawan Hidayat Pratama Kurniawan Saputra Wijaya "
    "Handayani Lestari Purnomo Nugroho Suryani Hartono Wahyuni Prasetyo Utami Haryanto Mulyani "
    "Sulistyo Kusuma Ramadhan Maulana Permata Anggraini"
)
_PLACES = _words(
    "Madiun Ngawi Magetan Ponorogo Nganjuk Surabaya Kediri Blitar Malang Jombang Bojonegoro "
    "Tulungagung Pacitan Trenggalek Jakarta Semarang Surakarta Yogyakarta"
)
_VILLAGES = _words(
    "Kare Klecorejo Sumberbening Bajulan Sugihwaras Ketandan Pajaran Sumbersari Tulung Klangon "
    "Bener Sidorejo Crabak Ngepeh Sukorejo"
)
_STREETS = _words(
    "Merdeka Diponegoro Sudirman Ahmad Yani Gajah Mada Pahlawan Kartini Veteran Mawar Melati "
    "Anggrek Kenanga Cendana Flamboyan"
)
_RELIGIONS = ("Islam", "Kristen", "Katolik", "Hindu", "Buddha", "Khonghucu")
_RELIGION_WEIGHTS = (87, 7, 3, 1, 1, 1)
_OCCUPATIONS = (
    "Petani/Pekebun",
    "Wiraswasta",
    "Karyawan Swasta",
    "Mengurus Rumah Tangga",
    "Pelajar/Mahasiswa",
    "Buruh Harian Lepas",
    "Pegawai Negeri Sipil",
    "Pedagang",
    "Guru",
    "Belum/Tidak Bekerja",
    "Pensiunan",
    "Perawat",
)
_MARITAL = ("Belum Kawin", "Kawin", "Cerai Hidup", "Cerai Mati")
_VACCINES = ("CoronaVac", "AstraZeneca", "Pfizer", "Moderna", "Sinopharm")
_SITES = ("Puskesmas Saradan", "Puskesmas Sumbersari", "RSUD Caruban", "Posyandu Kare")


def _person(rng: random.Random, serial: int) -> Record:
    female = rng.random() < 0.5
    year = rng.randint(1940, 2015)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    nik = f"{DISTRICT}{day + 40 if female else day:02d}{month:02d}{year % 100:02d}{serial:04d}"
    village = rng.choice(_VILLAGES)
    fields = {
        "name": f"{rng.choice(_GIVEN)} {rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
        "sex": "P" if female else "L",
        "birth_place": rng.choice(_PLACES),
        "birth_date": f"{year:04d}-{month:02d}-{day:02d}",
        "address": {
            "street": f"Jl. {rng.choice(_STREETS)} No. {rng.randint(1, 250)}",
            "rt": f"{rng.randint(1, 30):03d}",
            "rw": f"{rng.randint(1, 12):03d}",
            "village": village,
            "district": "Saradan",
            "regency": "Kabupaten Madiun",
            "province": "Jawa Timur",
            "postal_code": f"631{rng.randint(50, 99)}",
        },
        "religion": rng.choices(_RELIGIONS, _RELIGION_WEIGHTS)[0],
        "marital_status": rng.choice(_MARITAL),
        "occupation": rng.choice(_OCCUPATIONS),
        "family_card": f"{DISTRICT}{rng.randint(0, 10**10 - 1):010d}",
    }
    return ("residents", nik, fields)


def _doses(rng: random.Random, nik: str) -> Iterator[Record]:
    year, month, day = 2021, rng.randint(1, 12), rng.randint(1, 28)
    vaccine = rng.choice(_VACCINES)
    for n in range(1, rng.choice((0, 1, 2, 2, 3, 3)) + 1):
        yield (
            "doses",
            f"{nik}/{n}",
            {
                "vaccine": vaccine if n < 3 else rng.choice(_VACCINES),
                "date": f"{year + (month + 3 * n) // 13:04d}-{(month + 3 * n - 1) % 12 + 1:02d}-{day:02d}",
                "batch": f"{vaccine[:2].upper()}{rng.randint(100000, 999999)}",
                "site": rng.choice(_SITES),
                "dose": n,
            },
        )


def records(n: int, seed: int = 2021) -> Iterator[Record]:
    """Exactly ``n`` records (changes): residents, each followed by their doses."""
    rng = random.Random(seed)
    produced = 0
    serial = 0
    seen: set[str] = set()
    while produced < n:
        serial += 1
        person = _person(rng, serial % 10_000)
        if person[1] in seen:  # NIKs are unique: skip the rare collision of date + serial
            continue
        seen.add(person[1])
        yield person
        produced += 1
        for dose in _doses(rng, person[1]):
            if produced >= n:
                return
            yield dose
            produced += 1
