"""Property: what a replica applies depends on what it holds, not on arrival order.

Certificates, renewals and revocations race with the data they govern. A replica that
got the data first (and quarantined it, or applied it before a revocation) must end
in exactly the state of one that got the trust records first: same visible state,
same quarantined changes with the same reasons.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import Identity, Knowledge, Replica
from offsync.trust import issue_certificate, revoke

T0 = 1_700_000_000_000
AUTH = Identity(bytes([1]) * 32, "authority")
SITES = [Identity(bytes([n]) * 32, f"site{n}") for n in (2, 3, 4)]
KEYS = ["3519000000000001", "3519000000000002", "3520000000000001"]

write = st.tuples(st.just("write"), st.integers(0, 2), st.sampled_from(KEYS), st.integers(0, 3))
cert = st.tuples(
    st.just("cert"),
    st.integers(0, 2),
    st.sampled_from([("3519",), ("3520",), ()]),
    st.sampled_from([None, 5, 15]),
)
revocation = st.tuples(
    st.just("revoke"), st.integers(0, 2), st.integers(0, 20), st.sampled_from([None, 1, 3])
)
tick = st.tuples(st.just("tick"), st.integers(1, 5))
ops = st.lists(st.one_of(write, write, write, cert, revocation, tick), min_size=6, max_size=24)


class Wall:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def make_bundles(plan: list[tuple[Any, ...]]) -> tuple[list[bytes], list[bytes]]:
    """Run the plan on open-mode writers; return (trust bundles, data bundles)."""
    wall = Wall()
    auth = Replica.open(":memory:", identity=AUTH, wall=wall)
    writers = [Replica.open(":memory:", identity=s, wall=wall) for s in SITES]
    sent: dict[int, Knowledge] = {}
    trust_bundles: list[bytes] = []
    data_bundles: list[bytes] = []

    def flush(rep: Replica, out: list[bytes]) -> None:
        out.extend(rep.pack(sent.get(id(rep))))
        sent[id(rep)] = rep.knowledge()

    # Two sites start certified, so there is data for later revocations to take back.
    opening = [("cert", 0, ("3519",), None), ("cert", 1, ("3520",), None)]
    for op in opening + plan:
        wall.ms += 1
        if op[0] == "write":
            _, who, key, value = op
            writers[who].put("residents", key, {"v": value, "by": who})
            flush(writers[who], data_bundles)
        elif op[0] == "cert":
            _, who, prefixes, until = op
            issue_certificate(
                auth,
                SITES[who],
                collections=["residents"],
                prefixes=list(prefixes),
                valid_until=None if until is None else T0 + until,
            )
            flush(auth, trust_bundles)
        elif op[0] == "revoke":
            _, who, at, after_seq = op
            revoke(auth, SITES[who], effective_ms=T0 + at, after_seq=after_seq)
            flush(auth, trust_bundles)
        else:
            wall.ms += op[1]
    return trust_bundles, data_bundles


def receive(bundles: list[bytes]) -> Replica:
    rep = Replica.open(":memory:", identity=Identity(bytes([9]) * 32), trust=[AUTH.public_key])
    for b in bundles:
        rep.apply(b)
    return rep


def summary(rep: Replica) -> tuple[bytes, list[Any]]:
    return rep.state_digest(), sorted(rep.quarantined_changes())


@settings(max_examples=max(10, settings().max_examples // 3))
@given(plan=ops, data=st.data())
def test_quarantine_then_trust_converges_with_trust_then_data(
    plan: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    trust_bundles, data_bundles = make_bundles(plan)
    trust_first = receive(trust_bundles + data_bundles)
    data_first = receive(data_bundles + trust_bundles)
    shuffled = receive(data.draw(st.permutations(trust_bundles + data_bundles)))
    expected = summary(trust_first)
    assert summary(data_first) == expected
    assert summary(shuffled) == expected
    # Applying everything again changes nothing.
    for b in trust_bundles + data_bundles:
        shuffled.apply(b)
    assert summary(shuffled) == expected
