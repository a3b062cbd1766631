"""A simulated national deployment: a centre that has heard from many sites, without
running them (issue 18: 80,000 sites).

Each site is a real key pair with one sealed segment at the centre (index rows only:
the segments' bytes are never read by what this is for, receipt-only answers) and a
real signed receipt heard by the centre, stating what an honest site under the
bounded-receipt rule states to its centre: its own changes and its district's (the
scope it may read) and the centre's. ``answer`` packs what the centre answers one site
and measures it against the spec's limits.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..bundle import read_header
from ..encoding import packb
from ..http.pull import PullRequest
from ..identity import Identity
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..receipt import Receipt
from ..replica import Replica
from ..scope import Partition, Stream
from ..stores.base import SegmentRow
from ..stores.memory import MemoryStore
from ..unpack import Budget, unpack

__all__ = ["Answer", "Deployment", "simulate"]


@dataclass(slots=True)
class Deployment:
    """The centre, the sites' public keys (``sites[i]`` is in district ``i // district``)."""

    centre: Replica
    sites: list[bytes]
    district: int
    changes: int  # seqs each site has sealed
    signed: bool  # the sites' receipts verify

    def district_of(self, i: int) -> list[bytes]:
        first = i - i % self.district
        return self.sites[first : first + self.district]

    def scoped_knowledge(self, i: int) -> Knowledge:
        """What site ``i`` holds when it may read only its district (and the centre)."""
        return Knowledge({Stream(o, RECORDS): [(1, self.changes)] for o in self.district_of(i)})


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of the centre to one site, measured."""

    bundles: int
    bytes: int
    header_bytes: int
    receipts: int
    origins_stated: int
    request_bytes: int  # the signed pull request's body (what the site states)
    seconds: float
    cpu_seconds: float

    def within(self, limits: Limits = DEFAULT_LIMITS) -> list[str]:
        """The spec limits this answer reaches (empty: none)."""
        out = []
        if self.bytes > limits.max_bundle_bytes:
            out.append("max_bundle_bytes")
        if self.header_bytes > limits.max_header_bytes:
            out.append("max_header_bytes")
        if self.request_bytes > limits.max_header_bytes:
            out.append("max_header_bytes (pull request)")
        if self.receipts > limits.max_receipts:
            out.append("max_receipts")
        if self.origins_stated > limits.max_origins:
            out.append("max_origins")
        return out


#: The one partition the simulated sites write in.
RECORDS = Partition("records")


def simulate(sites: int, *, district: int = 8, changes: int = 3, sign: bool = True) -> Deployment:
    """A centre that holds ``changes`` seqs of each of ``sites`` sites and has heard one
    honest (bounded) receipt from each: its own changes and its district's.

    ``sign=False`` makes the sites' keys and receipts' signatures random bytes (a
    receipt then has the size and form of a real one but does not verify): for tests
    of sizes and limits at 80,000 sites in seconds; ``answer`` then reads headers
    without verifying receipts. The segments' bytes are never stored."""
    centre_id = Identity.generate(label="centre")
    ids = [Identity.generate(label=f"site{i}") for i in range(sites)] if sign else []
    keys = [i.public_key for i in ids] if sign else [os.urandom(32) for _ in range(sites)]
    store = MemoryStore()
    rows = [
        SegmentRow(Stream(k, RECORDS), 1, changes, os.urandom(32), b"\0" * 32, b"", "applied")
        for k in keys
    ]
    span = [1, changes]
    with store.transaction():
        store.add_segments(rows)
        for i, key in enumerate(keys):
            first = i - i % district
            wire = [
                [o, [[RECORDS.collection, RECORDS.prefix, span]]]
                for o in sorted(keys[first : first + district])
            ]
            created = 1_000_000 + i
            if sign:
                receipt = Receipt.issue(ids[i], created, Knowledge.from_wire(wire)).encode()
            else:
                receipt = packb([key, created, wire, os.urandom(64)])
            store.set_peer(key, created, packb(wire), receipt)
    return Deployment(Replica(store, centre_id), keys, district, changes, sign)


def answer(dep: Deployment, i: int, stated: Knowledge, *, scoped: bool = False) -> Answer:
    """What the centre answers site ``i``'s pull stating ``stated``, measured, packed as
    the HTTP server packs it (``scoped``: the server lets a site read only its
    district's changes, as ``readable`` does)."""
    site = dep.sites[i]
    district = set(dep.district_of(i))
    readable = district.__contains__ if scoped else None
    wall, cpu = time.perf_counter(), time.process_time()
    packer = dep.centre.iter_pack(
        stated, always=True, receiver=site, stated=stated, readable=readable
    )
    bundles = list(packer)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    header_bytes = receipts = origins = 0
    for b in bundles:
        stated_by = _receipts(b) if not dep.signed else read_header(b)[0].receipts
        header_bytes = max(header_bytes, int.from_bytes(b[8:12], "big"))
        receipts = max(receipts, len(stated_by))
        origins = max([origins, *(sum(1 for _ in r.knowledge.origins()) for r in stated_by)])
    request = PullRequest(stated, 1 << 24).encode()
    return Answer(
        len(bundles),
        sum(map(len, bundles)),
        header_bytes,
        receipts,
        origins,
        len(request),
        wall,
        cpu,
    )


def _receipts(bundle: bytes, limits: Limits = DEFAULT_LIMITS) -> list[Receipt]:
    """The receipts of a bundle's header decoded as a receiver decodes them, under the
    limits (``max_header_bytes``, nesting, the decode budget shared by the header's
    knowledge), without verifying signatures (``simulate(sign=False)``)."""
    hlen = int.from_bytes(bundle[8:12], "big")
    if hlen > limits.max_header_bytes:
        return []  # reported by Answer.within
    raw = unpack(bundle[12 : 12 + hlen], "bundle header", limits, max_depth=4)
    budget = Budget(limits.max_decode_bytes, "bundle header")
    out = [Receipt.decode(r, limits, verify=False, budget=budget) for r in raw["receipts"]]
    Knowledge.from_wire(raw["ranges"], limits, budget)
    return out
