"""Read scopes in certificates and per-stream revocations (docs/spec.md §13.3-§13.5),
and who may read what (``offsync.readable``).

Pure: trust stores are built from ``_trust`` record fields, as a replica builds its own.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any

import pytest

from offsync.errors import UsageError
from offsync.readable import read_scope_of
from offsync.scope import Partition, PartitionRule, Scope, Stream
from offsync.trust import (
    Certificate,
    Revocation,
    TrustStore,
    after_held,
    certificate_fields,
    revocation_fields,
    write_scope,
)

AUTH = bytes([1]) * 32
SITE = bytes([2]) * 32
OTHER = bytes([3]) * 32
STRANGER = bytes([4]) * 32
T0 = 1_700_000_000_000
HLC = T0 << 16  # an HLC at T0 ms
RULE = PartitionRule({"residents": 6, "doses": 6})
RESIDENTS_3519 = Partition("residents", "351901")


def cert(site: bytes = SITE, **options: Any) -> tuple[str, dict[str, Any]]:
    return f"cert/{site.hex()}", certificate_fields(site, **options)


def revocation(site: bytes = SITE, **options: Any) -> tuple[str, dict[str, Any]]:
    return f"revoke/{site.hex()}", revocation_fields(site, **options)


def store(*records: tuple[str, dict[str, Any]], rule: PartitionRule | None = None) -> TrustStore:
    return TrustStore.from_records([AUTH], records, rule)


def with_read(read: Any, site: bytes = SITE) -> tuple[str, dict[str, Any]]:
    key, fields = cert(site, collections=["residents"], prefixes=["3519"])
    return key, {**fields, "read": read}


# -- the read field: one form per scope -------------------------------------------------

MALFORMED_READ = {
    "empty prefix": {"residents": [""]},
    "unsorted": {"residents": ["3520", "3519"]},
    "duplicate": {"residents": ["3519", "3519"]},
    "one the start of another": {"residents": ["35", "3519"]},
    "star with others": {"*": [], "residents": []},
    "star with prefixes": {"*": ["3519"]},
    "empty collection name": {"": []},
    "collection over 64 bytes": {"c" * 65: []},
    "collection not a str": {1: []},
    "prefixes not an array": {"residents": "3519"},
    "a prefix not a str": {"residents": [3519]},
    "a prefix over 512 bytes": {"residents": ["3" * 513]},
    "not a map": ["residents"],
    "a str": "residents",
    "an int": 1,
}


@pytest.mark.parametrize("name", sorted(MALFORMED_READ))
def test_every_malformed_read_form_is_ignored_with_a_problem(name: str) -> None:
    key, fields = with_read(MALFORMED_READ[name])
    trust = store((key, fields), cert(OTHER))
    assert SITE not in trust.certificates and OTHER in trust.certificates
    assert len(trust.problems) == 1 and trust.problems[0].startswith(f"_trust/{key}: ")
    # The whole record is ignored: the site may neither write nor read.
    assert trust.check(SITE, 1, HLC, "residents", "3519010001") == "trust: unknown signer"
    assert trust.read_scope(SITE, T0) == Scope.nothing()


def test_a_read_prefix_longer_than_the_rule_is_malformed_only_with_the_rule() -> None:
    record = with_read({"residents": ["3519010"]})
    assert store(record).problems == ()
    assert store(record).read_scope(SITE, T0) == Scope({"residents": ["3519010"]})
    ruled = store(record, rule=RULE)
    assert SITE not in ruled.certificates
    assert ruled.problems == (
        f"_trust/{record[0]}: malformed certificate: a read scope prefix of 'residents'"
        " is longer than the partition rule's",
    )
    assert store(with_read({"residents": ["351901"]}), rule=RULE).problems == ()


def test_valid_read_forms_parse_to_their_scope() -> None:
    cases = {
        "everything": ({"*": []}, Scope.everything()),
        "nothing": ({}, Scope.nothing()),
        "whole collections": ({"lots": [], "residents": []}, Scope.whole("lots", "residents")),
        "prefixes": ({"residents": ["3519", "3520"]}, Scope({"residents": ["3519", "3520"]})),
    }
    for name, (field, scope) in cases.items():
        trust = store(with_read(field))
        assert trust.problems == (), name
        assert trust.read_scope(SITE, T0) == scope, name


def test_read_defaults_to_the_write_scope() -> None:
    trust = store(
        cert(SITE, collections=["residents", "doses"], prefixes=["3519", "3520"]),
        cert(OTHER),  # every collection, any key
        cert(STRANGER, collections=[]),
    )
    assert trust.certificates[SITE].read is None
    assert trust.read_scope(SITE, T0) == Scope(
        {"residents": ["3519", "3520"], "doses": ["3519", "3520"]}
    )
    assert trust.read_scope(OTHER, T0) == Scope.everything() - Scope.whole("_trust")
    assert trust.read_scope(STRANGER, T0) == Scope.nothing()


def test_write_scope_ignores_names_that_match_no_record() -> None:
    # "" is no collection; a prefix over 512 bytes starts no key. Neither widens the scope.
    assert write_scope(["", "residents"], ["3519"]) == Scope({"residents": ["3519"]})
    assert write_scope(["residents"], ["3" * 600]) == Scope.nothing()
    assert write_scope(["residents"], ["3" * 600, "3519"]) == Scope({"residents": ["3519"]})
    assert write_scope(["*", "_trust"], []) == Scope.everything() - Scope.whole("_trust")


def test_the_write_check_does_not_use_read() -> None:
    trust = store(with_read({"*": []}))
    assert trust.check(SITE, 1, HLC, "residents", "3519010001") is None
    assert trust.check(SITE, 1, HLC, "residents", "3520010001") == (
        "scope: key outside the allowed prefixes"
    )
    assert trust.check(SITE, 1, HLC, "doses", "3519010001") == (
        "scope: collection 'doses' not allowed for this key"
    )


def test_certificate_fields_write_read_and_refuse_what_replicas_would_ignore() -> None:
    scope = Scope({"residents": ["351901"], "lots": []})
    by_scope = certificate_fields(SITE, read=scope)
    assert by_scope["read"] == {"lots": [], "residents": ["351901"]}
    assert certificate_fields(SITE, read={"residents": ["351901"], "lots": []}) == by_scope
    assert certificate_fields(SITE)["read"] is None
    assert Certificate.from_fields(by_scope).read == scope
    assert certificate_fields(SITE, read=scope, partitions=RULE) == by_scope
    with pytest.raises(UsageError, match="longer than the partition rule"):
        certificate_fields(SITE, read=Scope({"residents": ["3519010"]}), partitions=RULE)
    with pytest.raises(UsageError, match="excludes"):
        certificate_fields(SITE, read=Scope.whole("residents") - Scope({"residents": ["35"]}))
    with pytest.raises(UsageError):
        certificate_fields(SITE, read=["residents"])
    with pytest.raises(UsageError):
        certificate_fields(SITE, read={"residents": "3519"})


# -- what a site may read now ------------------------------------------------------------


def test_read_scope_is_nothing_outside_the_certificates_validity() -> None:
    trust = store(cert(SITE, valid_from=T0, valid_until=T0 + 10))
    assert trust.read_scope(SITE, T0 - 1) == Scope.nothing()
    assert trust.read_scope(SITE, T0) == Scope.everything() - Scope.whole("_trust")
    assert trust.read_scope(SITE, T0 + 9) == Scope.everything() - Scope.whole("_trust")
    assert trust.read_scope(SITE, T0 + 10) == Scope.nothing()
    assert trust.read_scope(STRANGER, T0) == Scope.nothing()
    assert trust.read_scope(AUTH, T0) == Scope.everything()


def test_read_scope_is_nothing_once_revoked() -> None:
    read = Scope({"residents": ["351901"]})
    later = store(cert(SITE, read=read), revocation(SITE, effective_ms=T0 + 5))
    assert later.read_scope(SITE, T0 + 4) == read
    assert later.read_scope(SITE, T0 + 5) == Scope.nothing()
    for pinned in (
        revocation(SITE, after={RESIDENTS_3519: 7}),
        revocation(SITE, after={}),
        revocation(SITE, after_seq=3),
        revocation(SITE, after={RESIDENTS_3519: 7}, effective_ms=T0 + 5),
    ):
        # A revocation pinned to what the centre holds is in force at once.
        assert store(cert(SITE, read=read), pinned).read_scope(SITE, T0) == Scope.nothing()


def test_read_scope_is_nothing_once_retired() -> None:
    trust = store(cert(SITE), cert(OTHER, replaces=SITE, valid_from=T0 + 100))
    assert trust.read_scope(SITE, T0 + 99) == Scope.everything() - Scope.whole("_trust")
    assert trust.read_scope(SITE, T0 + 100) == Scope.nothing()
    assert trust.read_scope(OTHER, T0 + 100) == Scope.everything() - Scope.whole("_trust")


def test_who_may_read_what() -> None:
    trust = store(
        cert(SITE, collections=["residents"], prefixes=["351901"]),
        cert(OTHER, collections=[], valid_until=T0 + 10),
    )
    assert read_scope_of(None, STRANGER, T0) == Scope.everything()  # open mode
    assert read_scope_of(trust, AUTH, T0) == Scope.everything()
    assert read_scope_of(trust, SITE, T0, ["lots"]) == Scope(
        {"residents": ["351901"], "_trust": [], "lots": []}
    )
    # A site that may write nothing still reads _trust and the reference collections.
    assert read_scope_of(trust, OTHER, T0, ("lots",)) == Scope.whole("_trust", "lots")
    assert read_scope_of(trust, OTHER, T0 + 10, ("lots",)) == Scope.nothing()
    assert read_scope_of(trust, STRANGER, T0, ["lots"]) == Scope.nothing()  # not even _trust
    with pytest.raises(UsageError):
        read_scope_of(trust, SITE, T0, "lots")
    for site in (AUTH, SITE, OTHER, STRANGER):
        for now in (T0, T0 + 10):
            assert trust.may_read(site, now) == (not read_scope_of(trust, site, now).is_empty)


# -- revocations by stream ----------------------------------------------------------------


def test_after_keeps_listed_streams_up_to_their_seq_and_revokes_the_rest() -> None:
    trust = store(
        cert(SITE),
        revocation(SITE, after={RESIDENTS_3519: 7, ("doses", "351901"): 0}),
    )

    def check(seq: int, collection: str = "residents", prefix: str = "351901") -> str | None:
        return trust.check(SITE, seq, HLC, collection, prefix + "0001", prefix=prefix)

    assert check(1) is None and check(7) is None
    assert check(8) == "trust: key revoked"
    assert check(1, "doses") == "trust: key revoked"  # listed with 0: nothing kept
    assert check(1, prefix="351902") == "trust: key revoked"  # a stream not listed
    assert check(1, "lots", "") == "trust: key revoked"
    # Without the prefix the change is in partition (collection, ""), not listed.
    assert trust.check(SITE, 1, HLC, "residents", "3519010001") == "trust: key revoked"
    # Names that make no partition (format 2 did not check them) are in no listed stream.
    assert trust.check(SITE, 1, HLC, "c" * 65, "k") == "trust: key revoked"


def test_after_or_effective_ms_either_revokes() -> None:
    trust = store(cert(SITE), revocation(SITE, after={RESIDENTS_3519: 7}, effective_ms=T0 + 5))
    kept = trust.check(SITE, 7, (T0 + 4) << 16, "residents", "3519010001", prefix="351901")
    assert kept is None
    late = trust.check(SITE, 7, (T0 + 5) << 16, "residents", "3519010001", prefix="351901")
    assert late == "trust: key revoked"


def test_after_round_trips_sorted_and_accepts_pairs() -> None:
    fields = revocation_fields(
        SITE, after={("residents", "351902"): 3, RESIDENTS_3519: 7, ("doses", ""): 1}
    )
    assert fields["after"] == [
        ["doses", "", 1],
        ["residents", "351901", 7],
        ["residents", "351902", 3],
    ]
    assert "after_seq" not in fields and fields["effective_ms"] is None
    rev = Revocation.from_fields(fields)
    assert rev.after == {
        Partition("doses"): 1,
        RESIDENTS_3519: 7,
        Partition("residents", "351902"): 3,
    }
    assert rev.to_fields() == fields
    assert revocation_fields(SITE, after={})["after"] == []
    with pytest.raises(UsageError):
        revocation_fields(SITE)
    with pytest.raises(UsageError):
        revocation_fields(SITE, after={("", "x"): 1})
    with pytest.raises(UsageError):
        revocation_fields(SITE, after={RESIDENTS_3519: -1})
    with pytest.raises(UsageError):
        revocation_fields(SITE, after=[RESIDENTS_3519])  # type: ignore[arg-type]


def test_after_held_keeps_what_the_centre_holds_of_the_site() -> None:
    # The format-3 Knowledge: offsync.v3.knowledge until the switch moves it to the top.
    name = "offsync.v3.knowledge" if find_spec("offsync.v3") else "offsync.knowledge"
    knowledge_type: Any = import_module(name).Knowledge
    held = knowledge_type(
        {
            Stream(SITE, RESIDENTS_3519): [(1, 7)],
            Stream(SITE, Partition("doses", "351901")): [(1, 3), (5, 9)],
            Stream(OTHER, RESIDENTS_3519): [(1, 50)],
        }
    )
    after = after_held(held, SITE)
    assert after == {RESIDENTS_3519: 7, Partition("doses", "351901"): 9}
    assert after_held(held, STRANGER) == {}
    trust = store(cert(SITE), revocation(SITE, after=after))
    assert trust.check(SITE, 7, HLC, "residents", "3519010001", prefix="351901") is None
    assert trust.check(SITE, 8, HLC, "residents", "3519010001", prefix="351901") == (
        "trust: key revoked"
    )


MALFORMED_AFTER = {
    "not an array": {"residents": 1},
    "an item of two": [["residents", 1]],
    "an item of four": [["residents", "", 1, 2]],
    "unsorted": [["residents", "351902", 1], ["residents", "351901", 1]],
    "duplicate": [["residents", "351901", 1], ["residents", "351901", 2]],
    "negative seq": [["residents", "", -1]],
    "seq 2^63": [["residents", "", 2**63]],
    "bool seq": [["residents", "", True]],
    "empty collection": [["", "", 1]],
    "prefix not a str": [["residents", 35, 1]],
    "prefix over 512 bytes": [["residents", "3" * 513, 1]],
}


@pytest.mark.parametrize("name", sorted(MALFORMED_AFTER))
def test_every_malformed_after_is_ignored_with_a_problem(name: str) -> None:
    key, fields = revocation(SITE, effective_ms=T0)
    trust = store(cert(SITE), (key, {**fields, "after": MALFORMED_AFTER[name]}))
    assert trust.revocations == {}
    assert len(trust.problems) == 1 and trust.problems[0].startswith(f"_trust/{key}: ")


def test_a_revocation_needs_effective_ms_or_after() -> None:
    key, fields = revocation(SITE, effective_ms=T0)
    trust = store(cert(SITE), (key, {**fields, "effective_ms": None}))
    assert trust.revocations == {} and len(trust.problems) == 1


def test_erase_orders_only_by_an_authority() -> None:
    trust = store(cert(SITE))
    assert trust.check(SITE, 1, HLC, "residents", "3519010001", op=2) == "trust: not an authority"
    assert trust.check(STRANGER, 1, HLC, "residents", "3519010001", op=2) == (
        "trust: not an authority"
    )
    assert trust.check(AUTH, 1, HLC, "residents", "3519010001", op=2) is None
    assert trust.check(SITE, 1, HLC, "residents", "3519010001", op=1) is None
