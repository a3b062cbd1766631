"""What format 3 added, on the command line: who entered a write (``--author``,
``OFFSYNC_AUTHOR``), an authority's erase order (``offsync erase``), priorities set at
``init`` and a round's byte budget (``sync --max-bytes-per-round``).

Real site directories through the CLI (tests/helpers/cli.py); the budget rounds run
against ``offsync serve`` on a free loopback port."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.cli.site import Site
from offsync.schemas import Schema, Schemas
from offsync.sync import exchange_folder
from tests.helpers.cli import PASSPHRASE, InProcess, Shell, serving

NIK = "3519010101900001"


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return InProcess(tmp_path)


def test_author_from_the_option_or_the_environment_shows_in_history(sh: Shell) -> None:
    sh.init("kec")
    sh.run("--site", "kec", "put", "residents", NIK, "name=Siti", "--author", "clerk-7")
    sh.run("--site", "kec", "put", "residents", NIK, "phone=0812", env={"OFFSYNC_AUTHOR": "bu-ani"})
    sh.run(
        "--site", "kec", "delete", "residents", NIK, "--author", "pak-budi",
        env={"OFFSYNC_AUTHOR": "bu-ani"},
    )  # fmt: skip
    sh.run("--site", "kec", "put", "residents", "other", "name=X")
    doc = sh.json("--site", "kec", "history", "residents", NIK)
    assert [(v["op"], v["author"]) for v in doc] == [
        ("put", "clerk-7"),
        ("put", "bu-ani"),
        ("delete", "pak-budi"),  # the option wins over the environment
    ]
    assert sh.json("--site", "kec", "history", "residents", "other")[0]["author"] is None
    table = sh.run("--site", "kec", "history", "residents", NIK).stdout
    assert "author" in table and "clerk-7" in table and "bu-ani" in table
    assert "pak-budi" in table and "schema" not in table  # no versioned collection here


def test_a_conflict_settled_by_a_clerk_names_the_clerk(sh: Shell) -> None:
    sh.init("kec-a", "--policy", "doses=fww")
    b = sh.init("kec-b", "--policy", "doses=fww")
    share = sh.cwd / "share"
    share.mkdir()
    sh.run("--site", "kec-a", "put", "doses", "3519/1", "vaccine=CoronaVac")
    sh.run("--site", "kec-b", "put", "doses", "3519/1", "vaccine=Pfizer")
    sh.run("--site", "kec-a", "sync", str(share), "--peer", b)
    sh.run("--site", "kec-b", "sync", str(share))
    [conflict] = sh.json("--site", "kec-b", "conflicts")
    keep = next(h for h, v in conflict["versions"].items() if v == {"vaccine": "Pfizer"})
    sh.run(
        "--site", "kec-b", "conflicts", "resolve", "doses", "3519/1", "--choose", keep,
        env={"OFFSYNC_AUTHOR": "supervisor-2"},
    )  # fmt: skip
    last = sh.json("--site", "kec-b", "history", "doses", "3519/1")[-1]
    assert last["author"] == "supervisor-2" and last["current"]


def test_an_author_too_long_is_refused_and_nothing_is_written(sh: Shell) -> None:
    sh.init("kec")
    bad = sh.run(
        "--site", "kec", "put", "residents", NIK, "name=Siti", "--author", "x" * 65, code=2
    )
    assert "author" in bad.stderr
    assert sh.json("--site", "kec", "get", "residents", NIK, code=1) is None
    assert sh.json("--site", "kec", "history", "residents", NIK, code=1) == []


def certified_pair(sh: Shell) -> tuple[str, str]:
    """An authority and a sub-district it certified for 351901 (both with the
    certificate); the sub-district wrote a resident, and the authority holds it."""
    auth = sh.init("authority", "--authority")
    kec = sh.init("kec", "--trust", auth)
    sh.run(
        "--site", "authority", "trust", "issue", kec, "--label", "kec",
        "--collection", "residents", "--prefix", "351901", "--valid-from", "2020-01-01",
    )  # fmt: skip
    sh.run("--site", "authority", "pack", "certs")
    sh.run("--site", "kec", "apply", "certs")
    sh.run("--site", "kec", "put", "residents", NIK, "name=Siti Aminah", "--author", "clerk-7")
    sh.run("--site", "kec", "pack", "from-kec")
    sh.run("--site", "authority", "apply", "from-kec")
    assert sh.json("--site", "authority", "get", "residents", NIK) == {"name": "Siti Aminah"}
    return auth, kec


def test_erase_at_a_site_that_is_not_an_authority_fails_and_changes_nothing(sh: Shell) -> None:
    certified_pair(sh)
    before = sh.json("--site", "kec", "status")
    no = sh.run("--site", "kec", "erase", "residents", NIK, "--reason", "REQ-1", code=2)
    assert "not an authority" in no.stderr and "next:" in no.stderr
    assert sh.json("--site", "kec", "status") == before
    assert sh.json("--site", "kec", "get", "residents", NIK) == {"name": "Siti Aminah"}
    # The reason is asked for: an erase order without one is a usage error.
    sh.run("--site", "authority", "erase", "residents", NIK, code=2)


def test_erase_at_the_authority_removes_the_record_here_and_where_the_order_goes(
    sh: Shell,
) -> None:
    certified_pair(sh)
    done = sh.json(
        "--site", "authority", "erase", "residents", NIK, "--reason", "REQ-2026-118",
        "--author", "dpo-1",
    )  # fmt: skip
    assert done["erased"] and done["change"]
    assert sh.json("--site", "authority", "get", "residents", NIK, code=1) is None
    order = sh.json("--site", "authority", "history", "residents", NIK)[-1]
    assert (order["op"], order["author"]) == ("erase", "dpo-1")
    assert order["fields"] == {"reason": "REQ-2026-118"}
    again = sh.run("--site", "authority", "erase", "residents", NIK, "--reason", "REQ-2026-118")
    assert "erased here already" in again.stdout
    # The order travels like any change: the sub-district applies it and loses the values.
    sh.run("--site", "authority", "pack", "order")
    sh.run("--site", "kec", "apply", "order")
    assert sh.json("--site", "kec", "get", "residents", NIK, code=1) is None
    shown = json.dumps(sh.json("--site", "kec", "history", "residents", NIK))
    assert "Siti" not in shown
    # And the key cannot be written again.
    sh.run("--site", "kec", "put", "residents", NIK, "name=Siti", code=2)


def test_init_keeps_priorities_in_site_json_and_refuses_bad_ones(sh: Shell) -> None:
    sh.init("kec", "--priority", "doses=10", "--priority", "births=10,corrections=200")
    doc = json.loads((sh.cwd / "kec" / "site.json").read_text())
    assert doc["priorities"] == {"births": 10, "corrections": 200, "doses": 10}
    assert sh.json("--site", "kec", "status")  # the site opens with them
    for bad in ("doses", "doses=soon", "_trust=5", "=3"):
        refused = sh.run("init", f"bad-{len(bad)}", "--open", "--priority", bad, code=2)
        assert "--priority" in refused.stderr
        assert not (sh.cwd / f"bad-{len(bad)}").exists()


def test_budget_is_refused_when_not_positive_or_for_a_folder(sh: Shell) -> None:
    sh.init("kec")
    share = sh.cwd / "share"
    share.mkdir()
    zero = sh.run(
        "--site", "kec", "sync", "http://127.0.0.1:9", "--max-bytes-per-round", "0", code=2
    )
    assert "positive" in zero.stderr
    sh.run("--site", "kec", "sync", "http://127.0.0.1:9", "--max-bytes-per-round", "ten", code=2)
    folder = sh.run("--site", "kec", "sync", str(share), "--max-bytes-per-round", "1MB", code=2)
    assert "folder" in folder.stderr
    assert list(share.iterdir()) == []


def backlog(site_dir: Path, corrections: int) -> None:
    """A large backlog of bulk corrections written before any vital record (through
    the library, in the site's own store: the CLI writes one record at a time)."""
    site = Site.load(site_dir)
    with site.open(site.identity(PASSPHRASE)) as replica:
        replica.put_many(
            "corrections",
            {f"c{i:05d}": {"blob": os.urandom(200).hex()} for i in range(corrections)},
        )


@pytest.mark.slow
def test_budgeted_rounds_send_priorities_first_and_say_when_more_is_waiting(
    tmp_path: Path,
) -> None:
    sh = Shell(tmp_path)
    sh.init("pusat")
    sh.init("kec", "--priority", "doses=10", "--priority", "births=10")
    backlog(tmp_path / "kec", 2000)
    for i in range(5):
        sh.run("--site", "kec", "put", "doses", f"d{i}", "lot=L1")
        sh.run("--site", "kec", "put", "births", f"b{i}", f"child={i}")
    with serving(sh, "pusat") as (url, _):
        first = sh.json("--site", "kec", "sync", url, "--max-bytes-per-round", "100K")
        [row] = first["rounds"]
        assert row["more"] and row["sent_bytes"] <= 100 * 1024
        held = sh.json("--site", "pusat", "ls")
        assert held["doses"] == 5 and held["births"] == 5, "vital records went first"
        assert held.get("corrections", 0) < 2000
        told = sh.run("--site", "kec", "sync", url, "--max-bytes-per-round", "100KiB").stdout
        assert "stopped at the byte budget" in told
        for _ in range(30):
            if not sh.json("--site", "kec", "sync", url, "--max-bytes-per-round", "100K")["rounds"][
                0
            ]["more"]:
                break
        else:
            pytest.fail("the backlog never finished")
        last = sh.run("--site", "kec", "sync", url, "--max-bytes-per-round", "100K").stdout
        assert "byte budget" not in last
    assert sh.json("--site", "pusat", "ls")["corrections"] == 2000


def test_history_shows_the_schema_version_of_a_change_held_for_it(sh: Shell) -> None:
    """A site upgraded first writes version 2; this site (unversioned) holds that change
    for its version, and `history --held` says which version it was written under."""
    kec = sh.init("kec")
    share = sh.cwd / "share"
    share.mkdir()
    upgraded = Replica.open(
        ":memory:",
        identity=Identity.generate(label="kab"),
        schemas=Schemas({"residents": Schema(2, {1: lambda f: {**f, "v2": True}})}),
    )
    with upgraded:
        upgraded.put("residents", NIK, {"name": "Siti"}, author="clerk-9")
        exchange_folder(upgraded, share, [bytes.fromhex(kec)])
    sh.run("--site", "kec", "sync", str(share))
    [held] = sh.json("--site", "kec", "history", "residents", NIK, "--held")
    assert held["schema"] == 2 and held["author"] == "clerk-9" and held["held"]
    table = sh.run("--site", "kec", "history", "residents", NIK, "--held").stdout
    assert "schema" in table and "clerk-9" in table and "held" in table
    row = next(line for line in table.splitlines() if "clerk-9" in line)
    assert [cell.strip() for cell in row.split("│")][5:7] == ["put", "2"]
