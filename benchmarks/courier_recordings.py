"""The courier backlog of issue 14: N ID-card recordings of synthetic biometrics from
four sub-districts, carried on a courier disk to the district, then forwarded by the
district to the centre over HTTP (uvicorn on a free loopback port); SQLite everywhere.

A recording is ~250 KB of random bytes sized like the real thing: a JPEG photo of
30 KB, a signature of 10 KB, ten WSQ fingerprints of 15 KB and two iris templates of
30 KB (14 blobs). Random bytes do not compress, as JPEG and WSQ do not.

Phases, each with wall and CPU time (CPU of this process: the server runs in a thread
of it) and MB/s of blob bytes:

* export  each sub-district writes its records and sealed chunk files to the disk
* cp -r   a plain ``cp -r`` of the disk's files, the same bytes, for comparison
* import  the district takes the disk (records first, then every chunk, verified)
* forward the district syncs with the centre over HTTP (records, then the blob lane)

Then bytes on the disk (apparent and allocated), and the peak RSS after each phase: it
must stay flat (under 300 MB) whatever N, since every step streams chunk by chunk.
The setup (writing the recordings at the sub-districts) is not measured. Nothing is
asserted but that the centre ends holding every blob.

``--records-only`` measures the forward's record round alone, in seconds and no blob
bytes: the district's N recordings (references to blobs nobody holds) packed into
bundles of at most 16 MiB (HTTP's) and each applied at the centre, both SQLite in this
process, with the traced peak (``tracemalloc``: Python's allocations, not SQLite's
page cache) of packing and of applying one bundle.

    .venv/bin/python benchmarks/courier_recordings.py --recordings 400
    .venv/bin/python benchmarks/courier_recordings.py          # 15,600: ~4 GB x 5 of disk
    .venv/bin/python benchmarks/courier_recordings.py --records-only --recordings 4000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.demo import free_loopback_socket, serving
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import sync
from offsync.transports import DiskTransport
from offsync.transports.base import DEFAULT_MAX_BUNDLE
from offsync.transports.http import HTTPTransport

#: (field, bytes, media type) of one recording's blobs: 250 KB in all.
RECORDING = [
    ("photo", 30_000, "image/jpeg"),
    ("signature", 10_000, "image/png"),
    *[(f"finger{i}", 15_000, "image/x-wsq") for i in range(10)],
    *[(f"iris{i}", 30_000, "application/octet-stream") for i in range(2)],
]
SUBS = 4


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes) under ``root``."""
    files = apparent = allocated = 0
    for directory, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            files += 1
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return files, apparent, allocated


def timed(what: str, mb: float, fn: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{what:8} wall {wall:8.1f} s  cpu {cpu:8.1f} s  {mb / wall:7.1f} MB/s wall"
        f"  {mb / max(cpu, 1e-9):7.1f} MB/s cpu  peak RSS {peak_rss_mb():6.1f} MB",
        flush=True,
    )
    return result


def record_backlog(site: Replica, first: int, n: int) -> None:
    """``n`` recordings at ``site``, each blob put from fresh random bytes (streamed:
    one recording in memory at a time)."""
    for i in range(first, first + n):
        with site.batch():
            fields: dict[str, Any] = {"nik": f"3519{i:012d}"}
            for name, size, media_type in RECORDING:
                fields[name] = site.put_blob(os.urandom(size), media_type).field()
            site.put("recordings", f"3519{i:012d}", fields)


def record_round(root: Path, n: int, http: bool) -> None:
    """``--records-only``: the district's record round to the centre, traced; with
    ``--http``, synced over HTTP instead (untraced: peak RSS)."""
    district, centre = (
        Replica(SQLiteStore(str(root / f"{name}.sqlite")), Identity.generate(label=name))
        for name in ("district", "centre")
    )
    t0 = time.perf_counter()
    for i in range(n):  # as ``record_backlog``, the blobs' bytes left out
        with district.batch():
            fields: dict[str, Any] = {"nik": f"3519{i:012d}"}
            for name, size, media_type in RECORDING:
                fields[name] = BlobRef(os.urandom(32), size, media_type).field()
            district.put("recordings", f"3519{i:012d}", fields)
    print(
        f"== {n} recordings, records only: setup {time.perf_counter() - t0:.1f} s"
        f"  peak RSS {peak_rss_mb():.1f} MB",
        flush=True,
    )
    if http:
        served = serving(centre, free_loopback_socket(), readable=None)
        with served as url, HTTPTransport(url, district.identity) as link:
            timed("forward", 0.0, lambda: sync(district, link))
        assert centre.get("recordings", f"3519{n - 1:012d}") is not None
        return
    tracemalloc.start()
    packing = applying = count = total = 0
    bundles = district.iter_pack(max_bytes=DEFAULT_MAX_BUNDLE)
    while True:
        tracemalloc.reset_peak()
        data = next(bundles, None)
        if data is None:
            break
        packing = max(packing, tracemalloc.get_traced_memory()[1])
        tracemalloc.reset_peak()
        report = centre.apply(data)
        applying = max(applying, tracemalloc.get_traced_memory()[1])
        assert report.applied > 0
        count, total = count + 1, total + len(data)
        del data
    tracemalloc.stop()
    assert centre.get("recordings", f"3519{n - 1:012d}") is not None
    print(
        f"records  {count} bundle(s), {total / 1e6:.1f} MB: traced peak packing"
        f" {packing / 1e6:.1f} MB, applying {applying / 1e6:.1f} MB"
        f" ({applying / n:.0f} bytes per recording)",
        flush=True,
    )
    district.close()
    centre.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=15_600)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument(
        "--records-only", action="store_true", help="the record round alone, traced"
    )
    parser.add_argument("--http", action="store_true", help="--records-only over HTTP: RSS")
    args = parser.parse_args()
    n = args.recordings
    if args.workdir is not None:  # a place with room (several GB): made if need be
        args.workdir.mkdir(parents=True, exist_ok=True)
    if args.records_only:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            record_round(Path(tmp), n, args.http)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)

        def open_site(name: str) -> Replica:
            identity = Identity.generate(label=name)
            return Replica(SQLiteStore(str(root / f"{name}.sqlite")), identity)

        subs = [open_site(f"sub{i}") for i in range(SUBS)]
        district, centre = open_site("district"), open_site("centre")
        blob_bytes = n * sum(size for _, size, _ in RECORDING)
        mb = blob_bytes / 1e6
        print(
            f"== {n} recordings x {len(RECORDING)} blobs = {n * len(RECORDING)} blobs, "
            f"{mb:.1f} MB, from {SUBS} sub-districts",
            flush=True,
        )
        t0 = time.perf_counter()
        for k, sub in enumerate(subs):
            share = n // SUBS + (k < n % SUBS)
            record_backlog(sub, k * (n // SUBS + 1), share)
        print(
            f"setup    {time.perf_counter() - t0:.1f} s (not measured)  peak RSS {peak_rss_mb():.1f} MB"
        )
        usb = root / "usb"
        usb.mkdir()

        def export() -> None:
            for sub in subs:
                with DiskTransport(usb, sub, district) as t:
                    report = sync(sub, t, pull=False)
                assert report.ok and report.blobs is not None and not report.blobs.left

        timed("export", mb, export)
        files, apparent, allocated = disk_usage(usb)
        print(
            f"disk     {files} files, {apparent / 1e6:.1f} MB apparent, "
            f"{allocated / 1e6:.1f} MB allocated ({apparent / blob_bytes:.3f} x the blob bytes)"
        )
        copy = root / "copy"
        timed(
            "cp -r",
            apparent / 1e6,
            lambda: subprocess.run(["cp", "-r", str(usb), str(copy)], check=True),
        )
        shutil.rmtree(copy)

        def take() -> None:
            report = sync(district, DiskTransport(usb, district), push=False)
            assert report.ok and report.blobs is not None
            assert district.missing_blobs().count == 0

        timed("import", mb, take)
        served = ExitStack()
        url = served.enter_context(serving(centre, free_loopback_socket(), readable=None))

        def onward() -> None:
            with HTTPTransport(url, district.identity) as link:
                report = sync(district, link)
            assert report.ok and report.blobs is not None

        timed("forward", mb, onward)
        served.close()
        missing = centre.missing_blobs()
        held = sum(1 for ref in centre.referenced_blobs() if centre.has_blob(ref))  # paged
        print(f"centre   {held} blobs held, {missing.count} missing")
        assert missing.count == 0 and held == n * len(RECORDING)
        for r in (*subs, district, centre):
            r.close()


if __name__ == "__main__":
    main()
