"""The field demo (the README's main job) runs to the end and converges."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT

SITES = ["pusat", "kab-madiun", "kec-saradan", "kec-mejayan", "kec-wungu", "pos-wungu"]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offsync.demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] in SITES:
            rows[cells[0]] = cells
    return rows


def test_demo_converges_and_prints_the_final_table() -> None:
    done = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The narrative: every road was taken, the centre was down first, a conflict settled.
    for phrase in (
        "The centre is down",
        "tries the centre: RetryableTransportError",
        "USB disk",
        "shared",
        "The centre is back: http://127.0.0.1:",
        "the district clerk keeps",
        "certificates, signed by the centre",
        "Surabaya NIK: refused at the desk",
        "uncertified laptop",
        "Receipts travel back",
        "ID-card photos",
        "and none of their",
        "certified for district 351901 only",
        "pos-saradan bootstraps over HTTP",
        "0 of any other district; its state equals the centre's restricted to its scope: yes",
        "dose 2 recorded at pos-saradan",
        "not held here",
    ):
        assert phrase in out, phrase
    rows = table_rows(out)
    assert list(rows) == SITES
    header = next(ln for ln in out.splitlines() if ln.startswith("| site"))
    names = [c.strip() for c in header.strip("|").split("|")]
    col = {n: i for i, n in enumerate(names)}
    digests = {r[col["state digest"]] for r in rows.values()}
    assert len(digests) == 1 and re.fullmatch(r"[0-9a-f]{16}", digests.pop())
    held = {r[col["held"]] for r in rows.values()}
    assert len(held) == 1
    total = int(held.pop())
    written = sum(int(r[col["written"]]) for r in rows.values())
    # Everyone holds the stranger's change too, in quarantine, never applied.
    assert total == written + 1 and written > 1000
    for name, r in rows.items():
        at, of = r[col["at centre"]].split("/")
        assert at == of == r[col["written"]], name
        assert r[col["knows it"]] == "yes", name
        assert r[col["conflicts"]] == "0", name
        assert r[col["quarantined"]] == "1", name
    assert f"centre holds {written} of {written} changes written (and 1 refused" in out

    # Photos: the ones that travelled over HTTP reached the centre (the lane over disks
    # and folders carries the others once it is there); the post fetched none.
    recorded = sum(int(n) for n in re.findall(r"changes recorded offline, (\d+) ID-card", out))
    uploaded = re.search(r"kec-wungu uploads .* and (\d+) photos", out)
    assert uploaded is not None and int(uploaded.group(1)) > 0
    photos, referenced = map(int, rows["pusat"][col["photos"]].split("/"))
    assert referenced == recorded and int(uploaded.group(1)) <= photos <= recorded
    assert rows["pos-wungu"][col["photos"]] == f"0/{recorded}"
    assert f"photos at the centre: {photos} of {recorded} recorded" in out


def test_demo_refuses_nonsense_arguments() -> None:
    done = run_demo("--residents", "many")
    assert done.returncode == 2
    assert "invalid int value" in done.stderr


def test_the_demo_fails_when_a_replica_did_not_converge() -> None:
    from offsync import Identity, Replica
    from offsync.demo import POLICIES, Office, report_table

    centre = Office(
        "pusat",
        "centre",
        "-",
        Replica.open(":memory:", identity=Identity.generate(), policies=POLICIES),
    )
    site = Office(
        "kec",
        "sub-district",
        "-",
        Replica.open(":memory:", identity=Identity.generate(), policies=POLICIES),
    )
    try:
        site.replica.put("residents", "3519010101900001", {"name": "never delivered"})
        lines: list[str] = []
        assert not report_table([centre, site], centre, lines.append)
        assert "NOT CONVERGED" in lines[-1]
        for bundle in site.replica.pack():
            centre.replica.apply(bundle)
        for bundle in centre.replica.pack(site.replica.knowledge(), always=True):
            site.replica.apply(bundle)
        assert report_table([centre, site], centre, lines.append)
    finally:
        centre.replica.close()
        site.replica.close()
