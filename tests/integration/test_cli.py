"""The ``offsync`` command: records, bundle files, exit codes, conflicts.

These checks invoke the command in-process (click's runner) to stay fast; the flows
between sites run the real script in subprocesses (test_cli_flows.py). Exit codes are
part of the interface: 0 done, 1 local failure, 2 usage, 3 refused input, 4 transport
failure (see ``offsync.cli``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import InProcess, Shell


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return InProcess(tmp_path)


def test_records_round_trip(sh: Shell) -> None:
    key = sh.init("saradan", "--policy", "doses=fww")
    assert len(key) == 64
    assert sh.json("--site", "saradan", "id")["public_key"] == key
    doc = json.loads((sh.cwd / "saradan" / "site.json").read_text())
    assert doc["policies"] == {"doses": "fww"} and doc["public_key"] == key
    site = ("--site", "saradan")
    sh.run(*site, "put", "residents", "3519010101900001", "name=Siti Aminah", "age:=41")
    sh.run(*site, "put", "residents", "3519010101900001", "--fields", '{"village": "Kare"}')
    assert sh.json(*site, "get", "residents", "3519010101900001") == {
        "age": 41,
        "name": "Siti Aminah",
        "village": "Kare",
    }
    sh.run(*site, "put", "doses", "3519010101900001/1", "vaccine=CoronaVac")
    assert sh.json(*site, "ls") == {"doses": 1, "residents": 1}
    # A first-writer-wins record is a fact: a plain put is a usage error with a way out.
    refused = sh.run(*site, "put", "doses", "3519010101900001/1", "vaccine=X", code=2)
    assert "resolve" in refused.stderr
    assert sh.json(*site, "delete", "residents", "3519010101900001") == {"deleted": True}
    sh.run(*site, "get", "residents", "3519010101900001", code=1)
    # OFFSYNC_SITE works like --site.
    assert sh.run("ls", env={"OFFSYNC_SITE": "saradan"}).returncode == 0


def test_usage_errors_say_what_to_do(sh: Shell) -> None:
    missing = sh.run("--site", "nowhere", "status", code=2)
    assert "not an offsync site" in missing.stderr and "offsync init" in missing.stderr
    sh.init("a")
    again = sh.run("init", "a", "--open", code=2)
    assert "already holds a site" in again.stderr
    wrong = sh.run("--site", "a", "status", code=2, env={"OFFSYNC_PASSPHRASE": "nope"})
    assert "passphrase" in wrong.stderr and "next:" in wrong.stderr
    no_pass = sh.run("--site", "a", "status", code=2, env={"OFFSYNC_PASSPHRASE": ""})
    assert "passphrase" in no_pass.stderr
    sh.run("--site", "a", "put", "residents", "1", "no-equals-sign", code=2)
    sh.run("--site", "a", "frobnicate", code=2)
    bad = sh.run("init", "b", "--open", "--policy", "doses=sometimes", code=2)
    assert "sometimes" in bad.stderr
    # A passphrase file works instead of the environment variable.
    (sh.cwd / "pass.txt").write_text("kare-klecorejo-2021\n")
    sh.run("--passphrase-file", "pass.txt", "--site", "a", "status")


def test_bundle_files_pack_inspect_verify_apply(sh: Shell) -> None:
    a = sh.init("a")
    sh.init("b")
    for i in range(3):
        sh.run("--site", "a", "put", "residents", f"35190101019000{i:02d}", f"name=Resident {i}")
    [written] = sh.json("--site", "a", "pack", "outbox", "--max-bytes", "65536")
    assert written["changes"] == 3
    [info] = sh.json("inspect", "outbox")
    assert info["valid"] and info["signature"] == "valid" and info["sender"] == a
    assert info["changes"] == 3
    assert info["ranges"] == [
        {"origin": a, "collection": "residents", "prefix": "", "intervals": [[1, 3]]}
    ]
    assert info["recipient"] is None and info["receipts"][0]["replica"] == a
    assert "sender" in sh.run("inspect", written["file"]).stdout  # the human view
    assert sh.json("verify", "outbox")[0]["ok"]

    # A damaged copy: inspect and verify say so (exit 3); apply refuses it and still
    # applies the intact file given with it.
    bad = sh.cwd / "outbox" / "damaged.ofs"
    data = bytearray((sh.cwd / written["file"]).read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    [_, bad_info] = sh.json("inspect", "outbox", code=3)  # names sort: a-..., damaged
    assert not bad_info["valid"] and "Signature" in bad_info["error"]
    assert "NOT VALID" in sh.run("inspect", str(bad), code=3).stdout
    sh.run("verify", str(bad), code=3)
    rows = sh.json("--site", "b", "apply", "outbox", code=3)
    assert [r["ok"] for r in rows] == [True, False]
    assert rows[0]["applied"] == 3
    bad.unlink()
    again = sh.json("--site", "b", "apply", "outbox")
    assert again[0]["applied"] == 0 and again[0]["duplicates"] == 3
    assert sh.json("--site", "b", "get", "residents", "3519010101900002") == {"name": "Resident 2"}


def test_sealed_bundle_is_checked_at_its_recipient_only(sh: Shell) -> None:
    sh.init("a")
    b = sh.init("b")
    sh.init("c")
    sh.run("--site", "a", "put", "residents", "1", "name=Siti")
    sh.run("--site", "a", "pack", "--for", b, "--encrypt", "sealed")
    [info] = sh.json("inspect", "sealed")
    assert info["encrypted"] and info["recipient"] == b
    [at_c] = sh.json("--site", "c", "verify", "sealed")
    assert at_c["ok"] and "not checked" in at_c["detail"]
    [at_b] = sh.json("--site", "b", "verify", "sealed")
    assert at_b["ok"] and "segment signatures valid" in at_b["detail"]
    refused = sh.json("--site", "c", "apply", "sealed", code=3)
    assert "DecryptionError" in refused[0]["error"]
    assert sh.json("--site", "b", "apply", "sealed")[0]["applied"] == 1


def test_folder_sync_and_conflicts(sh: Shell) -> None:
    a = sh.init("kec-a", "--policy", "doses=fww")
    b = sh.init("kec-b", "--policy", "doses=fww")
    share = sh.cwd / "share"
    share.mkdir()
    sh.run("--site", "kec-a", "put", "doses", "3519/1", "vaccine=CoronaVac")
    sh.run("--site", "kec-b", "put", "doses", "3519/1", "vaccine=Pfizer")
    note = sh.run("--site", "kec-a", "sync", str(share))
    assert "no peer named" in note.stderr  # nothing to read yet and no one to write for
    sh.run("--site", "kec-a", "sync", str(share), "--peer", b)
    at_b = sh.json("--site", "kec-b", "sync", str(share))  # answers whoever wrote
    assert at_b["rounds"][0]["applied"] == 1 and at_b["rounds"][0]["conflicts"] == ["doses/3519/1"]
    sh.run("--site", "kec-a", "sync", str(share))

    [conflict] = sh.json("--site", "kec-b", "conflicts")
    assert conflict["key"] == "3519/1" and len(conflict["versions"]) == 2
    keep = next(h for h, v in conflict["versions"].items() if v == {"vaccine": "Pfizer"})
    assert keep.startswith(b[:12])
    assert "--choose" in sh.run("--site", "kec-b", "conflicts").stdout
    sh.run("--site", "kec-b", "conflicts", "resolve", "doses", "3519/1", code=2)
    sh.run("--site", "kec-b", "conflicts", "resolve", "doses", "3519/1", "--choose", "ab:9", code=2)
    done = sh.json("--site", "kec-b", "conflicts", "resolve", "doses", "3519/1", "--choose", keep)
    assert done["value"] == {"vaccine": "Pfizer"}
    assert sh.json("--site", "kec-b", "conflicts") == []
    sh.run("--site", "kec-b", "sync", str(share), "--peer", a)
    sh.run("--site", "kec-a", "sync", str(share))
    assert sh.json("--site", "kec-a", "conflicts") == []
    assert sh.json("--site", "kec-a", "get", "doses", "3519/1") == {"vaccine": "Pfizer"}
    digests = {sh.json("--site", s, "status")["state_digest"] for s in ("kec-a", "kec-b")}
    assert len(digests) == 1
    sh.run("--site", "kec-a", "sync", "no/such/folder", code=2)


def test_trust_authority_certificates_and_quarantine(sh: Shell) -> None:
    """An authority certifies a site for a region; a stranger's writes are held back."""
    auth = sh.init("authority", "--authority")
    kec = sh.init("kec-saradan", "--trust", auth)
    stranger = sh.init("stranger")
    kec_site = ("--site", "kec-saradan")
    # Not certified yet: the write is refused at the desk (exit 2) with a next step.
    early = sh.run(*kec_site, "put", "residents", "3519010000000001", "name=Siti", code=2)
    assert "trust: unknown signer" in early.stderr and "offsync trust list" in early.stderr
    # Only an authority issues certificates.
    sh.run("--site", "stranger", "trust", "issue", kec, code=2)
    sh.run(
        "--site", "authority", "trust", "issue", kec, "--label", "kec-saradan",
        "--collection", "residents", "--prefix", "351901", "--valid-from", "2020-01-01",
    )  # fmt: skip
    certs = sh.json("--site", "authority", "trust", "list")["certificates"]
    assert [(c["label"], c["prefixes"]) for c in certs] == [("kec-saradan", ["351901"])]
    sh.run("--site", "authority", "pack", "certs")
    sh.run(*kec_site, "apply", "certs")
    listed = sh.json(*kec_site, "trust", "list")
    assert listed["mode"] == "certified" and listed["authorities"] == [auth]
    sh.run(*kec_site, "put", "residents", "3519010000000001", "name=Siti")
    outside = sh.run(*kec_site, "put", "residents", "3520010000000001", "name=X", code=2)
    assert "scope" in outside.stderr
    # A certified label names a peer wherever a key is expected.
    sh.run(*kec_site, "pack", "for-auth", "--for", "kec-saradan")

    sh.run("--site", "stranger", "put", "residents", "3519010000000009", "name=Rogue")
    sh.run("--site", "stranger", "pack", "rogue")
    [applied] = sh.json(*kec_site, "apply", "rogue")
    assert applied["quarantined"] == 1 and applied["applied"] == 0
    status = sh.json(*kec_site, "status")
    [held] = status["quarantined"]
    assert held["origin"] == stranger and held["reason"] == "trust: unknown signer"
    assert sh.json(*kec_site, "get", "residents", "3519010000000009", code=1) is None

    # Revocation needs a bound; then it is listed everywhere it travels.
    sh.run("--site", "authority", "trust", "revoke", kec, code=2)
    sh.run("--site", "authority", "trust", "revoke", kec, "--after-seq", "1", "--reason", "lost")
    revoked = sh.json("--site", "authority", "trust", "list")["revocations"]
    assert revoked == [{"after_seq": 1, "effective": None, "reason": "lost", "site": kec}]
    # Trusting an authority later re-examines what was held.
    sh.init("open-site")
    assert sh.json("--site", "open-site", "trust", "list")["mode"] == "open"
    sh.run("--site", "open-site", "apply", "rogue")
    assert sh.json("--site", "open-site", "status")["quarantined"] == []
    assert sh.json("--site", "open-site", "trust", "import", auth)["added"]
    assert len(sh.json("--site", "open-site", "status")["quarantined"]) == 1
    sh.run("--site", "open-site", "trust", "import", "not-a-key", code=2)


def test_attestation_tokens_for_provisional_cards(sh: Shell) -> None:
    auth = sh.init("authority", "--authority")
    post = sh.init("post", "--trust", auth)
    sh.run("--site", "authority", "trust", "issue", post, "--label", "vaccination-post")
    sh.run("--site", "authority", "pack", "certs")
    sh.run("--site", "post", "apply", "certs")
    sh.run("--site", "post", "put", "doses", "3519010101900001/1", "vaccine=CoronaVac")
    token = sh.run("--site", "post", "attest", "issue", "doses", "3519010101900001/1").stdout
    token = token.strip()
    assert token.startswith("OFS2:") and len(token) < 400
    sh.run("--site", "post", "pack", "to-centre")
    sh.run("--site", "authority", "apply", "to-centre")  # the authority plays the centre
    checked = sh.json("--site", "authority", "attest", "check", token, "--fields",
                      '{"vaccine": "CoronaVac"}')  # fmt: skip
    assert checked["valid"] and checked["trust_checked"] and checked["fields_checked"]
    assert checked["key"] == "3519010101900001/1"
    # Other fields than the attested ones, or a damaged token: refused (exit 3).
    sh.run("--site", "authority", "attest", "check", token, "--fields", '{"vaccine": "X"}', code=3)
    sh.run("--site", "authority", "attest", "check", token[:-4] + "AAAA", code=3)
    # Back at the post: has the centre confirmed it?
    assert not sh.json("--site", "post", "attest", "check", token, "--centre", auth)["at_centre"]
    sh.run("--site", "authority", "pack", "--for", post, "receipt")
    sh.run("--site", "post", "apply", "receipt")
    assert sh.json("--site", "post", "attest", "check", token, "--centre", auth)["at_centre"]
    assert (
        "reached the centre"
        in sh.run("--site", "post", "attest", "check", token, "--centre", auth).stdout
    )


def test_serve_workers_need_postgres(sh: Shell) -> None:
    sh.init("pusat")
    refused = sh.run("--site", "pusat", "serve", "--port", "0", "--workers", "2", code=2)
    assert "--postgres" in refused.stderr and "next:" in refused.stderr


def test_serve_fails_on_a_database_it_cannot_reach_before_listening(sh: Shell) -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    sh.init("pusat")
    dsn = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"
    failed = sh.run("--site", "pusat", "serve", "--port", "0", "--postgres", dsn, code=1)
    assert "serving" not in failed.stdout and "next:" in failed.stderr


def test_status_shows_a_peer_claiming_more_of_our_seqs() -> None:
    """A site restored from an old backup learns from a receipt that it is behind."""
    from offsync import Identity, Replica
    from offsync.cli.status import status_document
    from offsync.receipt import Receipt

    ident = Identity(b"\x31" * 32, label="restored")
    site = Replica.open(":memory:", identity=ident)
    peer = Identity(b"\x32" * 32, label="district")
    from offsync.scope import Partition, Stream

    stream = Stream(ident.public_key, Partition("residents"))
    claim = Receipt.issue(peer, 1, site.knowledge().with_range(stream, 1, 5))
    assert site.record_receipt(claim)
    [shown] = status_document(site)["seq_claims"]
    assert (shown["peer"], shown["seq"], shown["blocks_writing"]) == (peer.public_key, 5, True)
    assert (shown["collection"], shown["prefix"]) == ("residents", "")


def test_disk_with_no_room_for_the_reply_says_what_was_imported(sh: Shell) -> None:
    """`disk import` on a stick with no room: the import stands and the output says so,
    the reply is reported as not written (exit 4), and the next run writes it.
    `--assume-free` stands in for the driver's figure (here: an operator saying 0)."""
    kec = sh.init("kec")
    kab = sh.init("kab")
    for i in range(3):
        sh.run("--site", "kec", "put", "residents", f"3519{i:012d}", f"name=R{i}")
    usb = sh.cwd / "usb"
    usb.mkdir()
    sh.run("--site", "kec", "disk", "export", str(usb), "--to", kab)

    full = sh.run("--site", "kab", "disk", "import", str(usb), "--assume-free", "0", code=4)
    assert f"reply not written for {kec[:12]}" in full.stdout and "not enough space" in full.stdout
    assert "3 change(s) were applied and stay applied" in full.stderr
    assert "--assume-free" in full.stderr and "run the same command again" in full.stderr
    assert (
        "no disk mounted"
        in sh.run("--site", "kab", "disk", "export", "nowhere", "--to", kec, code=4).stderr
    )
    assert sh.json("--site", "kab", "get", "residents", f"3519{2:012d}") == {"name": "R2"}
    assert not (usb / "OFFSYNC" / f"to-{kec[:32]}").exists()

    later = sh.json("--site", "kab", "disk", "import", str(usb))
    assert later["not_written"] == []
    assert [r["peer"] for r in later["rounds"] if r["sent_bundles"]] == [kec]
    back = sh.json("--site", "kec", "disk", "import", str(usb), "--no-reply")
    status = sh.json("--site", "kec", "status")
    assert back["rounds"][0]["received_bundles"] >= 1
    assert status["peers"][0]["holds_of_mine"] == 3  # kab's receipt made the trip

    # Export: a driver's (here the operator's) 0 refuses; a real figure lets it through.
    sh.run("--site", "kec", "put", "residents", "x", "name=late")
    no_room = sh.json(
        "--site", "kec", "disk", "export", str(usb), "--to", kab, "--assume-free", "0", code=4
    )
    [missing] = no_room["not_written"]
    assert missing["peer"] == kab and "you said only 0 B free" in missing["reason"]
    done = sh.json(
        "--site", "kec", "disk", "export", str(usb), "--to", kab, "--assume-free", "1.5G"
    )
    assert done["not_written"] == [] and done["rounds"][0]["sent_changes"] == 1
    bad = sh.run(
        "--site", "kec", "disk", "export", str(usb), "--to", kab, "--assume-free", "lots", code=2
    )
    assert "is not a size" in bad.stderr + bad.stdout
