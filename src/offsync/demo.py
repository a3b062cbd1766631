"""A short demo: three offline sites exchange bundle files and converge on SQLite."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from . import Identity, Replica, policies

POLICIES = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="offsync-demo-") as tmp:
        root = Path(tmp)
        names = ["kec-saradan", "kec-mejayan", "kab-madiun"]
        sites = {
            n: Replica.open(
                str(root / f"{n}.sqlite"), identity=Identity.generate(label=n), policies=POLICIES
            )
            for n in names
        }
        a, b, c = (sites[n] for n in names)
        print("Three sites, no network. Each records residents and doses offline.")
        a.put("residents", "3519010101900001", {"name": "Siti Aminah", "village": "Kare"})
        a.put("doses", "3519010101900001/1", {"vaccine": "CoronaVac", "date": "2021-03-02"})
        b.put("residents", "3519020202850002", {"name": "Budi Santoso", "village": "Klecorejo"})
        b.put("residents", "3519010101900001", {"phone": "0812-0000-0001"})
        c.put("doses", "3519010101900001/1", {"vaccine": "AstraZeneca", "date": "2021-03-02"})

        outbox = root / "courier"
        outbox.mkdir()
        for name, rep in sites.items():
            for i, bundle in enumerate(rep.pack()):
                (outbox / f"{name}-{i}.ofs").write_bytes(bundle)
        print(f"Bundles written to a folder: {sorted(p.name for p in outbox.iterdir())}")
        for _ in range(2):  # every file applied twice: duplicates change nothing
            for rep in sites.values():
                for f in sorted(outbox.iterdir()):
                    rep.apply(f.read_bytes())
        digests = {n: r.state_digest().hex()[:16] for n, r in sites.items()}
        for n, r in sites.items():
            print(f"  {n:12} digest {digests[n]}  conflicts {len(r.conflicts())}")
        print("Siti Aminah everywhere:", c.get("residents", "3519010101900001"))
        conflict = c.conflicts()[0]
        print(f"Two sites recorded dose 1 differently; standing version: {conflict.current}")
        c.resolve(
            "doses", conflict.key, {"vaccine": "CoronaVac", "date": "2021-03-02", "checked": True}
        )
        for rep in (a, b):
            for bundle in c.pack(rep.knowledge()):
                rep.apply(bundle)
        converged = len({r.state_digest() for r in sites.values()}) == 1
        print("Resolution delivered; converged:", converged)
        for r in sites.values():
            r.close()
        return 0 if converged else 1


if __name__ == "__main__":
    sys.exit(main())
