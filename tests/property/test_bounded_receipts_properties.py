"""Receipts bounded by their receiver never make data go missing (issue 18).

Sites sync over mailboxes and loopbacks in any order, while receipts restricted to
some receiver's needs (``Replica.receipt_for``) and bundles packed for one receiver
land at other sites too. Whatever happens: what a site believes a peer holds (the union
of the peer's receipts) is never more than the peer holds, and enough rounds
afterwards leave every site with everything, the same state, and a centre's word on
each site's own changes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import Identity, Replica, sync
from offsync.delivery import Delivery
from offsync.transports import MemoryTransport
from offsync.transports.base import Transport
from offsync.transports.memory import LoopbackTransport

N = 4
#: Links of a line 0 - 1 - 2 - 3 (0 is the centre): mailboxes, and loopbacks up.
LINE = [(0, 1), (1, 2), (2, 3)]

Step = tuple[str, int, int, int]


def _sites() -> list[Replica]:
    """The sites of the line; each relays for the one below it (spec §8.2: the
    centre's word on a site's changes travels down as a subject receipt)."""
    sites = [Replica.open(":memory:", identity=Identity.generate(label=f"s{i}")) for i in range(N)]
    for up, down in LINE[1:]:
        sites[up].set_relays_for([sites[down].id])
    return sites


def _links(sites: list[Replica], kinds: list[bool]) -> list[tuple[Replica, Transport]]:
    out: list[tuple[Replica, Transport]] = []
    for (up, down), mailbox in zip(LINE, kinds, strict=True):
        if mailbox:
            a, b = MemoryTransport.pair(sites[down], sites[up])
            out += [(sites[down], a), (sites[up], b)]
        else:
            out.append((sites[down], LoopbackTransport(sites[up], me=sites[down].id)))
    return out


def _sound(sites: list[Replica]) -> None:
    """Receipts are true statements: their union never claims what a peer lacks."""
    by_id = {s.id: s for s in sites}
    for s in sites:
        for peer, said in s.peer_knowledge().items():
            assert said <= by_id[peer].knowledge(), "a union of receipts claimed too much"


@settings(max_examples=20, deadline=None)
@given(
    kinds=st.lists(st.booleans(), min_size=3, max_size=3),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["write", "sync", "receipt", "stray"]),
            st.integers(0, N - 1),
            st.integers(0, N - 1),
            st.integers(0, N - 1),
        ),
        max_size=30,
    ),
)
def test_restricted_receipts_never_lose_data(kinds: list[bool], steps: list[Step]) -> None:
    sites = _sites()
    links = _links(sites, kinds)
    try:
        for n, (kind, a, b, c) in enumerate(steps):
            if kind == "write":
                sites[a].put("r", f"k{n}", {"by": a, "n": n})
            elif kind == "sync":
                r, t = links[(a + b + c) % len(links)]
                sync(r, t)
            elif kind == "receipt":  # a's receipt bounded for b, heard by c
                if a != c:
                    sites[c].record_receipt(sites[a].receipt_for(sites[b].id))
            elif a != c:  # a bundle packed for b, delivered to c instead
                since = sites[b].knowledge() if b != a else None
                for bundle in sites[a].iter_pack(since, receiver=sites[b].id, always=True):
                    sites[c].apply(bundle)
            _sound(sites)
        for _ in range(2 * N):
            for r, t in links:
                sync(r, t)
        _sound(sites)
        assert len({s.state_digest() for s in sites}) == 1
        assert len({s.knowledge().to_bytes() for s in sites}) == 1
        centre = sites[0].id
        for s in sites[1:]:
            assert Delivery(s, [centre]).reached_centre(), s.identity.label
    finally:
        for s in sites:
            s.close()
