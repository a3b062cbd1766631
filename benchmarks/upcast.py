"""What upcasting costs an apply: the same backlog of changes written under schema
version 1, applied by a replica with no schemas, by one at version 1 (nothing to
upcast) and by one at version 4 (three upcasters per put), in the same run; figures
printed, not asserted. ``--unversioned`` runs the first alone (for a tree without
schema versions, to compare the replica's cost without them).

    PYTHONPATH=src python benchmarks/upcast.py [records] [--unversioned]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from offsync import Replica
from offsync.identity import Identity
from offsync.schemas import Schema, Schemas


def _split(f: dict[str, Any]) -> dict[str, Any]:
    out = dict(f)
    out["given"], _, out["family"] = str(out.pop("name", "")).partition(" ")
    return out


def _region(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "region": "east"}


def _desa(f: dict[str, Any]) -> dict[str, Any]:
    out = dict(f)
    out["desa"] = out.pop("village", None)
    return out


def schemas(version: int) -> Schemas:
    steps = {1: _split, 2: _region, 3: _desa}
    return Schemas({"residents": Schema(version, {v: steps[v] for v in range(1, version)})})


def _open(path: str, identity: Identity, version: int | None) -> Replica:
    if version is None:
        return Replica.open(path, identity=identity)
    return Replica.open(path, identity=identity, schemas=schemas(version))


def main(n: int, unversioned: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        writer = _open(str(Path(tmp) / "w.db"), Identity.generate("w"), None)
        writer.put_many(
            "residents",
            (
                (f"35{i:010d}", {"name": f"Siti Aminah {i}", "village": "Kare", "born": 1990})
                for i in range(n)
            ),
        )
        # Second versions of a tenth of them: records recomputed through the policy.
        with writer.batch():
            for i in range(0, n, 10):
                writer.put("residents", f"35{i:010d}", {"village": "Kare Lor"})
        bundles = list(writer.pack())
        writer.close()
        versions: tuple[int | None, ...] = (None, None) if unversioned else (None, 1, 4) * 2
        for version in versions:
            reader = _open(
                str(Path(tmp) / f"r{version}-{time.monotonic_ns()}.db"),
                Identity.generate("r"),
                version,
            )
            start, cpu = time.perf_counter(), time.process_time()
            for b in bundles:
                reader.apply(b)
            took = time.perf_counter() - start
            cpu = time.process_time() - cpu
            count = n + n // 10
            what = "no schemas" if version is None else f"version {version}"
            print(
                f"{what} ({max((version or 1) - 1, 0)} upcasters): {count} changes in"
                f" {took:.2f} s wall, {cpu:.2f} s CPU: {count / cpu:,.0f} changes per CPU s"
            )
            reader.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 50_000, "--unversioned" in sys.argv)
