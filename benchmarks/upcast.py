"""What upcasting costs an apply: the same backlog of changes written under schema
version 1, applied by a replica at version 1 (nothing to upcast) and by one at
version 4 (three upcasters per put), in the same run; figures printed, not asserted.

    PYTHONPATH=src python benchmarks/upcast.py [records]
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


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        writer = Replica.open(
            str(Path(tmp) / "w.db"), identity=Identity.generate("w"), schemas=schemas(1)
        )
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
        for version in (1, 4, 1, 4):
            reader = Replica.open(
                str(Path(tmp) / f"r{version}-{time.monotonic_ns()}.db"),
                identity=Identity.generate("r"),
                schemas=schemas(version),
            )
            start = time.perf_counter()
            for b in bundles:
                reader.apply(b)
            took = time.perf_counter() - start
            count = n + n // 10
            print(
                f"version {version} ({version - 1} upcasters): {count} changes in {took:.2f} s,"
                f" {count / took:,.0f} changes/s"
            )
            reader.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
