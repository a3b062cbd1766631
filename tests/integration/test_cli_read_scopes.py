"""The command line of read scopes: ``trust certify --read``, ``trust show``, ``trust
list``, ``trust revoke --after*``, ``init --reference``, ``status`` and ``pack --for``;
and ``offsync serve`` offering a certified site only its read scope and refusing a
stranger (a real server process on a free port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import InProcess, Shell, serving

RULE = ("--partitions", "residents=4,doses=4", "--reference", "vaccine_lots")


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return InProcess(tmp_path)


def deployment(sh: Shell) -> tuple[str, str, str]:
    """An authority, a centre certified for everything, a district certified to write
    3201 and read residents of 3201 and 3202 and doses of 3201; their keys."""
    auth = sh.init("pusat", "--authority", *RULE)
    centre = sh.init("centre", "--trust", auth, *RULE)
    kec = sh.init("kec", "--trust", auth, *RULE)
    sh.run("--site", "pusat", "trust", "certify", centre, "--label", "centre", "--read", "*")
    sh.run(
        "--site", "pusat", "trust", "certify", kec, "--label", "kec",
        "--collection", "residents", "--collection", "doses", "--prefix", "3201",
        "--read", "residents=3201,3202", "--read", "doses=3201",
    )  # fmt: skip
    sh.run("--site", "pusat", "pack", "certs")
    for site in ("centre", "kec"):
        sh.run("--site", site, "apply", "certs")
    return auth, centre, kec


def test_certify_with_a_read_scope_show_and_list_it(sh: Shell) -> None:
    _, centre, kec = deployment(sh)
    shown = sh.json("--site", "pusat", "trust", "show", kec)
    assert shown["certificate"]["read"] == {"doses": ["3201"], "residents": ["3201", "3202"]}
    assert shown["reads"] == "_trust; doses=3201; residents=3201,3202; vaccine_lots"
    assert shown["reference"] == ["vaccine_lots"] and not shown["revoked"]
    assert sh.json("--site", "pusat", "trust", "show", centre)["reads"] == "everything"
    listed = {
        c["label"]: c["read"] for c in sh.json("--site", "kec", "trust", "list")["certificates"]
    }
    assert listed == {
        "centre": {"*": []},
        "kec": {"doses": ["3201"], "residents": ["3201", "3202"]},
    }
    text = sh.run("--site", "pusat", "trust", "show", kec).stdout
    assert "reads here now: _trust; doses=3201; residents=3201,3202; vaccine_lots" in text
    status = sh.json("--site", "kec", "status")
    assert status["reads"] == shown["reads"] and status["reference"] == ["vaccine_lots"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("residents=", "cannot read --read"),
        ("residents=32011", "longer than the partition rule"),
        ("=3201", "cannot read --read"),
    ],
)
def test_a_read_scope_the_cli_cannot_take_is_refused(sh: Shell, spec: str, words: str) -> None:
    sh.init("pusat", "--authority", *RULE)
    other = sh.init("other", "--open")
    refused = sh.run("--site", "pusat", "trust", "certify", other, "--read", spec, code=2)
    assert words in refused.stderr
    assert sh.json("--site", "pusat", "trust", "list")["certificates"] == []


def test_init_keeps_the_reference_collections(sh: Shell, tmp_path: Path) -> None:
    sh.init("pusat", "--authority", "--reference", "vaccine_lots,clinics")
    assert (
        '"reference": [\n    "vaccine_lots",\n    "clinics"\n  ]'
        in (tmp_path / "pusat" / "site.json").read_text()
    )
    refused = sh.run("init", "bad", "--authority", "--reference", "_trust", code=2)
    assert "_trust" in refused.stderr


def test_revoke_per_stream_and_what_the_key_reads_then(sh: Shell) -> None:
    auth, _, kec = deployment(sh)
    sh.run("--site", "kec", "put", "residents", "320101", "name=Siti")
    sh.run("--site", "kec", "pack", "mine", "--for", auth)
    sh.run("--site", "pusat", "apply", "mine")
    gone = sh.run("--site", "pusat", "trust", "revoke", kec, "--after-seq", "1", code=2)
    assert "--after-held-by" in gone.stderr
    sh.run("--site", "pusat", "trust", "revoke", kec, "--after", "residents/32=x", code=2)
    both = ("--after-held", "--after", "residents/3201=1")
    sh.run("--site", "pusat", "trust", "revoke", kec, *both, code=2)
    done = sh.json("--site", "pusat", "trust", "revoke", kec, "--after-held", "--reason", "lost")
    assert done["after"] == [["residents", "3201", 1]]
    [revoked] = sh.json("--site", "pusat", "trust", "list")["revocations"]
    assert revoked["after"] == [["residents", "3201", 1]] and revoked["reason"] == "lost"
    shown = sh.json("--site", "pusat", "trust", "show", kec)
    assert shown["revoked"] and shown["reads"] == "nothing"


def test_pack_for_a_key_that_may_read_nothing_is_refused(sh: Shell) -> None:
    auth = sh.init("pusat", "--authority", *RULE)
    stranger = sh.init("stranger", "--trust", auth, *RULE)
    refused = sh.run("--site", "pusat", "pack", "out", "--for", stranger, code=3)
    assert "may read nothing" in refused.stderr


def test_serve_offers_a_certified_site_its_scope_and_refuses_a_stranger(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    auth, _, _ = deployment(sh)
    for key in ("320101", "320201", "320301"):
        sh.run("--site", "centre", "put", "residents", key, f"name=resident {key}")
    sh.run("--site", "centre", "put", "vaccine_lots", "L1", "vaccine=measles")
    sh.init("stranger", "--trust", auth, *RULE)
    with serving(sh, "centre") as (url, _):
        sh.run("--site", "kec", "sync", url)
        refused = sh.run("--site", "stranger", "sync", url, code=3)
    assert "NotCertified" in refused.stdout + refused.stderr
    assert sh.json("--site", "kec", "get", "residents", "320101")["name"] == "resident 320101"
    assert sh.json("--site", "kec", "get", "residents", "320201")["name"] == "resident 320201"
    assert sh.json("--site", "kec", "get", "vaccine_lots", "L1")["vaccine"] == "measles"
    sh.run("--site", "kec", "get", "residents", "320301", code=1)
    sh.run("--site", "stranger", "get", "vaccine_lots", "L1", code=1)


def test_certificates_without_a_read_field_show_their_write_scope(sh: Shell) -> None:
    """A certificate of every collection reads everything but what `_trust` adds anyway;
    one of every collection under a prefix shows that prefix under "*"."""
    sh.init("pusat", "--authority", *RULE)
    anything, district = sh.init("anything", "--open"), sh.init("district", "--open")
    sh.run("--site", "pusat", "trust", "certify", anything, "--label", "anything")
    sh.run(
        "--site", "pusat", "trust", "certify", district, "--label", "district", "--prefix", "3201"
    )
    listed = {
        c["label"]: c["read"] for c in sh.json("--site", "pusat", "trust", "list")["certificates"]
    }
    assert listed == {"anything": {"*": []}, "district": {"*": ["3201"]}}
    assert sh.json("--site", "pusat", "trust", "show", anything)["reads"] == "everything"
    shown = sh.json("--site", "pusat", "trust", "show", district)["reads"]
    assert shown == "_trust; vaccine_lots; *=3201"
    assert "*=3201" in sh.run("--site", "pusat", "trust", "list").stdout
