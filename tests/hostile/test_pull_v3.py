"""The ``offsync-http/3`` pull request (spec-v3 §15.1-15.2) under hostile bodies: bad
digests, oversized detail, non-canonical or misordered fields, knowledge outside the
detail groups. Each is refused with the error the server maps to 422 (or 413), and a
valid request survives a round trip. Also the digest exchange's rules: equal digests
settle a group, a differing one is asked for in detail."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from offsync.encoding import packb
from offsync.errors import BundleFormatError, LimitExceededError
from offsync.http.pull import (
    DIGEST_THRESHOLD_STREAMS,
    PullRequest,
    decode_groups,
    differing_groups,
    digest_length,
    effective_knowledge,
    encode_groups,
)
from offsync.knowledge import Knowledge
from offsync.limits import Limits
from offsync.scope import Partition, Stream

A = bytes([1]) * 32
B = bytes([2]) * 32


def districts(count: int, origin: bytes = A, last: int = 3) -> Knowledge:
    """Knowledge of ``count`` residents partitions: six-digit district prefixes, 20
    districts per regency, 20 regencies per region (35, 36, ...)."""
    return Knowledge(
        {Stream(origin, Partition("residents", district(i))): [(1, last)] for i in range(count)}
    )


def district(i: int) -> str:
    return f"{35 + i // 400:02d}{i // 20 % 20:02d}{i % 20:02d}"


def body(**changes: Any) -> bytes:
    value: dict[str, Any] = {
        "detail": [],
        "digests": None,
        "encrypt": False,
        "knowledge": [],
        "max_bytes": 1 << 20,
        "receipt_known": None,
        "relays_for": [],
    }
    value.update(changes)
    return packb(dict(sorted(value.items())))


def test_a_request_round_trips_whole_and_with_digests() -> None:
    small = districts(10)
    request = PullRequest.make(small, 1 << 20, encrypt=True, relays_for=(B, A))
    assert request.digests is None and request.relays_for == (A, B)
    assert PullRequest.decode(request.encode()) == request
    big = districts(DIGEST_THRESHOLD_STREAMS + 1)
    asked = PullRequest.make(big, 1 << 20, receipt_known=bytes(32))
    assert asked.digests is not None and not asked.knowledge and asked.detail == ()
    assert PullRequest.decode(asked.encode()) == asked
    assert asked.digests[0] == 4  # 52 regencies >= √1025 = 32 groups
    again = asked.with_detail(big, (("residents", "3501"),))
    decoded = PullRequest.decode(again.encode())
    assert decoded == again and decoded.knowledge.stream_count() == 20


def test_digest_length_cuts_into_about_sqrt_groups() -> None:
    # 2,000 districts: G = 2 gives 5 regions, G = 3 10 groups, G = 4 100 regencies >= √2000.
    assert digest_length(districts(2000)) == 4
    assert digest_length(Knowledge()) == 0
    whole = Knowledge({Stream(A, Partition("lots")): [(1, 5)]})
    assert digest_length(whole) == 0


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"digests": [2, [["residents", "35", bytes(15)]]]}, BundleFormatError),
        ({"digests": [2, [["residents", "35", "x" * 16]]]}, BundleFormatError),
        ({"digests": [2, [["residents", "351", bytes(16)]]]}, BundleFormatError),
        ({"digests": [513, []]}, BundleFormatError),
        ({"digests": [-1, []]}, BundleFormatError),
        (
            {"digests": [2, [["residents", "36", bytes(16)], ["residents", "35", bytes(16)]]]},
            BundleFormatError,
        ),
        (
            {"digests": [2, [["residents", "35", bytes(16)], ["residents", "35", bytes(16)]]]},
            BundleFormatError,
        ),
        ({"digests": [2, [["", "35", bytes(16)]]]}, BundleFormatError),
        ({"digests": [2, [["r" * 65, "35", bytes(16)]]]}, LimitExceededError),
        ({"digests": [2]}, BundleFormatError),
        ({"detail": [["residents", "35"]]}, BundleFormatError),  # detail without digests
        ({"digests": [2, []], "detail": [["residents", "351"]]}, BundleFormatError),
        (
            {"digests": [2, []], "detail": [["residents", "36"], ["residents", "35"]]},
            BundleFormatError,
        ),
        ({"digests": [2, []], "detail": [["residents"]]}, BundleFormatError),
        ({"receipt_known": bytes(31)}, BundleFormatError),
        ({"relays_for": [B, A]}, BundleFormatError),
        ({"relays_for": [A, A]}, BundleFormatError),
        ({"relays_for": [bytes(31)]}, BundleFormatError),
        ({"max_bytes": 1000}, BundleFormatError),
        ({"encrypt": 1}, BundleFormatError),
    ],
)
def test_malformed_fields_are_refused(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        PullRequest.decode(body(**changes))


def test_knowledge_outside_the_detail_groups_is_refused() -> None:
    outside = districts(1).to_wire()  # residents/350000, group "35" at G = 2
    with pytest.raises(BundleFormatError, match="detail groups"):
        PullRequest.decode(body(digests=[2, []], detail=[["residents", "36"]], knowledge=outside))
    PullRequest.decode(body(digests=[2, []], detail=[["residents", "35"]], knowledge=outside))


def test_missing_extra_and_non_canonical_bodies_are_refused() -> None:
    good = body()
    value = msgpack.unpackb(good)
    del value["receipt_known"]
    with pytest.raises(BundleFormatError, match="exactly"):
        PullRequest.decode(packb(value))
    with pytest.raises(BundleFormatError, match="exactly"):
        PullRequest.decode(body(extra=1))
    # max_bytes as a uint 64 where uint 32 is the shortest: not canonical.
    longer = good.replace(b"\xce\x00\x10\x00\x00", b"\xcf\x00\x00\x00\x00\x00\x10\x00\x00")
    assert longer != good
    with pytest.raises(BundleFormatError):
        PullRequest.decode(longer)
    with pytest.raises(BundleFormatError):
        PullRequest.decode(good + b"\x00")


def test_oversized_bodies_and_detail_are_limited() -> None:
    limits = Limits(max_header_bytes=4096, max_streams=100)
    huge_detail = [["residents", f"{i:04d}"] for i in range(101)]
    with pytest.raises(LimitExceededError):
        PullRequest.decode(body(digests=[4, []], detail=huge_detail), Limits(max_streams=100))
    with pytest.raises(LimitExceededError):
        PullRequest.decode(body(digests=[4, []], detail=huge_detail), limits)
    many = [["residents", f"{i:04d}", bytes(16)] for i in range(101)]
    with pytest.raises(LimitExceededError):
        PullRequest.decode(body(digests=[4, many]), Limits(max_streams=100))
    with pytest.raises(LimitExceededError):
        PullRequest.decode(
            body(relays_for=[bytes([i]) * 32 for i in range(1, 10)]), Limits(max_relays_for=8)
        )
    deep = body(knowledge=[[A, [["residents", "", [[1, 2]]]]]])
    with pytest.raises((BundleFormatError, LimitExceededError)):
        PullRequest.decode(deep)


def test_equal_digests_settle_a_group_and_differing_ones_are_asked_for() -> None:
    site = districts(2000)
    server = site.union(Knowledge({Stream(B, Partition("residents", "350005")): [(1, 9)]}))
    request = PullRequest.make(site, 1 << 20)
    assert request.digests is not None and request.digests[0] == 4
    assert differing_groups(request, site) == ()
    assert effective_knowledge(request, site) == site  # nothing to send
    asked = differing_groups(request, server)
    assert asked == (("residents", "3500"),)
    # A group only one side lists differs too.
    extra = server.union(Knowledge({Stream(B, Partition("doses", "350005")): [(1, 1)]}))
    assert differing_groups(request, extra) == (("doses", "3500"), ("residents", "3500"))
    again = PullRequest.decode(request.with_detail(site, asked).encode())
    assert differing_groups(again, server) == ()
    owed = server.difference(effective_knowledge(again, server))
    assert list(owed.streams()) == [Stream(B, Partition("residents", "350005"))]
    assert owed.get(Stream(B, Partition("residents", "350005"))) == ((1, 9),)


def test_a_forged_digest_only_withholds_from_the_forger() -> None:
    """A site lying that a group is equal gets nothing of it; it cannot make the server
    send anything it would not send the honest site."""
    site = districts(2000)
    server = site.union(Knowledge({Stream(B, Partition("residents", "350005")): [(1, 9)]}))
    request = PullRequest.make(site, 1 << 20)
    assert request.digests is not None
    length, items = request.digests
    forged_items = tuple(
        (c, g, dict(((c2, g2), d2) for c2, g2, d2 in server.group_digests(length))[c, g])
        for c, g, _ in items
    )
    forged = PullRequest(request.knowledge, request.max_bytes, digests=(length, forged_items))
    assert differing_groups(forged, server) == ()
    assert not server.difference(effective_knowledge(forged, server))


def test_groups_body_round_trips_and_is_checked() -> None:
    groups = (("residents", "36"), ("doses", "35"))
    assert decode_groups(encode_groups(groups)) == (("doses", "35"), ("residents", "36"))
    with pytest.raises(BundleFormatError):
        decode_groups(packb([["residents", "36"], ["doses", "35"]]))
    with pytest.raises(BundleFormatError):
        decode_groups(packb([["residents", 36]]))
    with pytest.raises(LimitExceededError):
        decode_groups(encode_groups((("r", "1"), ("r", "2"))), Limits(max_streams=1))


# -- over real HTTP: the server answers hostile pull bodies with 422 / 413 ----------------


def test_hostile_pull_bodies_over_http_are_refused_and_change_nothing() -> None:
    import httpx

    from offsync import Identity, Replica
    from offsync.http.signing import sign_request
    from offsync.http.wire import MSGPACK_MEDIA_TYPE
    from offsync.server import create_app
    from tests.helpers.http import LiveServer

    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    centre.put("residents", "3519000000000001", {"name": "x"})
    site = Identity.generate(label="site")
    before = centre.state_digest()

    def pull(url: str, body: bytes) -> httpx.Response:
        challenge = bytes.fromhex(httpx.get(url + "/challenge").json()["challenge"])
        headers = sign_request(site, centre.id, "pull", body, challenge)
        headers["Content-Type"] = MSGPACK_MEDIA_TYPE
        return httpx.post(url + "/pull", content=body, headers=headers)

    with LiveServer(create_app(centre)) as srv:
        bad_digest = body(digests=[2, [["residents", "35", bytes(15)]]])
        answer = pull(srv.url, bad_digest)
        assert answer.status_code == 422 and answer.json()["error"] == "BundleFormatError"
        outside = body(
            digests=[2, []], detail=[["residents", "36"]], knowledge=districts(1).to_wire()
        )
        assert pull(srv.url, outside).status_code == 422
        huge = body(digests=[4, []], detail=[["residents", f"{i:04d}"] for i in range(400_000)])
        assert len(huge) > 4 * 1024 * 1024
        assert pull(srv.url, huge).status_code == 413
        assert pull(srv.url, body()).status_code == 200  # the same server still answers
    assert centre.state_digest() == before
    centre.close()
