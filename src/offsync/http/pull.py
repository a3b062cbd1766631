"""The signed pull request of ``offsync-http/3`` and its digest exchange (spec-v3 §15).

Sans-IO: the request body (``PullRequest``), the ``409`` body listing the groups whose
digests differ (``encode_groups``/``decode_groups``), and the rules both sides apply:
when a site sends digests instead of its whole knowledge (``digest_length``), which
groups a server asks detail of (``differing_groups``), and what the server takes the
site to hold once the digests settled the rest (``effective_knowledge``).

Why digests: a centre or a province holds some 300 000 streams; sending that knowledge
on every pull costs megabytes for a difference that is usually a handful of streams.
Per-group digests cost ~40 bytes a group and one round trip; the detail that follows
is the differing groups' only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isqrt
from typing import Any

from ..encoding import packb
from ..errors import BundleFormatError, LimitExceededError, UsageError
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..scope import check_collection, check_prefix
from ..unpack import Budget, unpack
from .wire import GROUPS_MEDIA_TYPE, MIN_PULL_BUNDLE_BYTES

__all__ = [
    "DIGEST_THRESHOLD_STREAMS",
    "GROUPS_MEDIA_TYPE",
    "MAX_GROUP_LENGTH",
    "Group",
    "PullRequest",
    "decode_groups",
    "differing_groups",
    "digest_length",
    "effective_knowledge",
    "encode_groups",
]

#: A site whose knowledge names more streams than this sends group digests first.
#: Below it whole knowledge is at most ~40 KiB (a stream with one interval is ~40
#: bytes), less than the second round trip a digest exchange may cost; above it, a
#: province's or centre's knowledge (10^4 to 3·10^5 streams) would be megabytes a pull.
DIGEST_THRESHOLD_STREAMS = 1024
#: The longest group prefix: a partition prefix is at most 512 UTF-8 bytes, so never
#: more than 512 code points.
MAX_GROUP_LENGTH = 512
#: What decoding a digest or group entry keeps, charged before it is built.
_GROUP_COST = 256

Group = tuple[str, str]
_KEYS = frozenset(
    {"detail", "digests", "encrypt", "knowledge", "max_bytes", "receipt_known", "relays_for"}
)


def digest_length(knowledge: Knowledge) -> int:
    """``G`` for a site's digests: the shortest group prefix that cuts its knowledge
    into at least √streams groups (or the longest prefix any of its partitions has).

    √n balances the two costs: the digest list grows with the number of groups, the
    detail of one differing group with the streams per group; at √n both are √n, so a
    centre's 300 000 streams become ~550 digests (~22 KiB) and a differing group's
    detail a few hundred streams. Registry prefixes are region codes, so this lands on
    a region level, as the spec expects."""
    streams = list(knowledge.streams())
    target = max(1, isqrt(len(streams)))
    longest = max((len(p.prefix) for _, p in streams), default=0)
    for length in range(min(longest, MAX_GROUP_LENGTH) + 1):
        if len({(p.collection, p.prefix[:length]) for _, p in streams}) >= target:
            return length
    return min(longest, MAX_GROUP_LENGTH)


def _group_of(collection: str, prefix: str, length: int) -> Group:
    return (collection, prefix[:length])


@dataclass(frozen=True, slots=True)
class PullRequest:
    """The body of ``POST /pull`` (spec-v3 §15.1).

    ``digests`` is ``(G, ((collection, group, digest), …))`` or None; with digests,
    ``knowledge`` states only the streams of the ``detail`` groups."""

    knowledge: Knowledge
    max_bytes: int
    encrypt: bool = False
    digests: tuple[int, tuple[tuple[str, str, bytes], ...]] | None = None
    detail: tuple[Group, ...] = ()
    receipt_known: bytes | None = None
    relays_for: tuple[bytes, ...] = field(default=())

    @classmethod
    def make(
        cls,
        knowledge: Knowledge,
        max_bytes: int,
        *,
        encrypt: bool = False,
        receipt_known: bytes | None = None,
        relays_for: tuple[bytes, ...] = (),
        detail: tuple[Group, ...] | None = None,
        digests: bool | None = None,
    ) -> PullRequest:
        """The request a site with ``knowledge`` sends: whole knowledge when it is small
        (``DIGEST_THRESHOLD_STREAMS``) or ``digests`` is False, else its group digests
        and, for the groups in ``detail`` (a server's ``409``), their streams."""
        relays = tuple(sorted(set(relays_for)))
        if digests is None:
            digests = knowledge.stream_count() > DIGEST_THRESHOLD_STREAMS
        if not digests:
            return cls(knowledge, max_bytes, encrypt, None, (), receipt_known, relays)
        length = digest_length(knowledge)
        wanted = tuple(sorted(set(detail or ())))
        chosen = set(wanted)
        stated = knowledge.only_streams(
            s for s in knowledge.streams() if _group_of(s.collection, s.prefix, length) in chosen
        )
        listed = (length, tuple(knowledge.group_digests(length)))
        return cls(stated, max_bytes, encrypt, listed, wanted, receipt_known, relays)

    def with_detail(self, whole: Knowledge, groups: tuple[Group, ...]) -> PullRequest:
        """The second request of a digest exchange: the same digests, ``groups`` added to
        ``detail`` and ``whole``'s streams of them stated."""
        if self.digests is None:
            raise UsageError("only a request with digests asks again with detail")
        length = self.digests[0]
        wanted = tuple(sorted(set(self.detail) | set(groups)))
        chosen = set(wanted)
        stated = whole.only_streams(
            s for s in whole.streams() if _group_of(s.collection, s.prefix, length) in chosen
        )
        return PullRequest(
            stated,
            self.max_bytes,
            self.encrypt,
            self.digests,
            wanted,
            self.receipt_known,
            self.relays_for,
        )

    def encode(self) -> bytes:
        digests: Any = None
        if self.digests is not None:
            length, items = self.digests
            digests = [length, [[c, g, d] for c, g, d in items]]
        return packb(
            {
                "detail": [[c, g] for c, g in self.detail],
                "digests": digests,
                "encrypt": self.encrypt,
                "knowledge": self.knowledge.to_wire(),
                "max_bytes": self.max_bytes,
                "receipt_known": self.receipt_known,
                "relays_for": list(self.relays_for),
            }
        )

    @classmethod
    def decode(cls, body: bytes, limits: Limits = DEFAULT_LIMITS) -> PullRequest:
        """Parse a pull request body (untrusted, strictly: canonical, exact keys, every
        field's rule). ``LimitExceededError`` over ``max_header_bytes`` (the server
        answers 413 before it reads that much) or past a count limit;
        ``BundleFormatError`` for anything else malformed."""
        if type(body) is not bytes:
            raise BundleFormatError("a pull request is bytes")
        if len(body) > limits.max_header_bytes:
            raise LimitExceededError("pull request larger than max_header_bytes")
        # map → knowledge's five arrays: six deep at most.
        value = unpack(body, "pull request", limits, max_depth=6, canonical=True)
        if type(value) is not dict or set(value) != _KEYS:
            raise BundleFormatError(
                "a pull request is a map of exactly: " + ", ".join(sorted(_KEYS))
            )
        max_bytes, encrypt = value["max_bytes"], value["encrypt"]
        if type(max_bytes) is not int or not MIN_PULL_BUNDLE_BYTES <= max_bytes < 1 << 63:
            raise BundleFormatError(
                f"pull request max_bytes must be at least {MIN_PULL_BUNDLE_BYTES}"
            )
        if type(encrypt) is not bool:
            raise BundleFormatError("pull request encrypt must be a boolean")
        known = value["receipt_known"]
        if known is not None and (type(known) is not bytes or len(known) != 32):
            raise BundleFormatError("pull request receipt_known is nil or 32 bytes")
        relays = _relays(value["relays_for"], limits)
        budget = Budget(limits.max_decode_bytes, "pull request")
        digests = _digests(value["digests"], budget, limits)
        detail = _groups(value["detail"], "detail", budget, limits)
        if digests is None and detail:
            raise BundleFormatError("pull request detail must be empty without digests")
        if digests is not None:
            for _, group in detail:
                if len(group) > digests[0]:
                    raise BundleFormatError("a detail group is longer than the digests' G")
        knowledge = Knowledge.from_wire(value["knowledge"], limits, budget)
        if digests is not None:
            chosen = set(detail)
            for _, p in knowledge.streams():
                if _group_of(p.collection, p.prefix, digests[0]) not in chosen:
                    raise BundleFormatError(
                        "with digests, knowledge states only the streams of the detail groups"
                    )
        return cls(knowledge, max_bytes, encrypt, digests, detail, known, relays)


def _relays(value: Any, limits: Limits) -> tuple[bytes, ...]:
    if type(value) is not list:
        raise BundleFormatError("pull request relays_for is an array")
    if len(value) > limits.max_relays_for:
        raise LimitExceededError(f"relays_for names more than {limits.max_relays_for} sites")
    previous = b""
    for site in value:
        if type(site) is not bytes or len(site) != 32 or site <= previous:
            raise BundleFormatError("relays_for holds sorted, unique 32-byte keys")
        previous = site
    return tuple(value)


def _check_group(collection: Any, group: Any) -> Group:
    check_collection(collection, BundleFormatError, LimitExceededError)
    check_prefix(group, BundleFormatError, LimitExceededError)
    return (collection, group)


def _groups(value: Any, what: str, budget: Budget, limits: Limits) -> tuple[Group, ...]:
    if type(value) is not list:
        raise BundleFormatError(f"pull request {what} is an array")
    if len(value) > limits.max_streams:
        raise LimitExceededError(f"{what} names more than {limits.max_streams} groups")
    budget.charge(len(value) * _GROUP_COST)
    out: list[Group] = []
    for item in value:
        if type(item) is not list or len(item) != 2:
            raise BundleFormatError(f"a {what} entry is [collection, group]")
        group = _check_group(item[0], item[1])
        if out and group <= out[-1]:
            raise BundleFormatError(f"{what} groups must be sorted and unique")
        out.append(group)
    return tuple(out)


def _digests(
    value: Any, budget: Budget, limits: Limits
) -> tuple[int, tuple[tuple[str, str, bytes], ...]] | None:
    if value is None:
        return None
    if type(value) is not list or len(value) != 2:
        raise BundleFormatError("pull request digests is nil or [G, digests]")
    length, items = value
    if type(length) is not int or not 0 <= length <= MAX_GROUP_LENGTH:
        raise BundleFormatError(f"digests' G is a number of code points, 0 to {MAX_GROUP_LENGTH}")
    if type(items) is not list:
        raise BundleFormatError("digests are an array")
    if len(items) > limits.max_streams:
        raise LimitExceededError(f"more than {limits.max_streams} group digests")
    budget.charge(len(items) * _GROUP_COST)
    out: list[tuple[str, str, bytes]] = []
    for item in items:
        if type(item) is not list or len(item) != 3:
            raise BundleFormatError("a digest entry is [collection, group, digest]")
        collection, group = _check_group(item[0], item[1])
        digest = item[2]
        if type(digest) is not bytes or len(digest) != 16:
            raise BundleFormatError("a group digest is 16 bytes")
        if len(group) > length:
            raise BundleFormatError("a digest's group is longer than G")
        if out and (collection, group) <= out[-1][:2]:
            raise BundleFormatError("digests must be sorted by (collection, group) and unique")
        out.append((collection, group, digest))
    return (length, tuple(out))


def differing_groups(request: PullRequest, mine: Knowledge) -> tuple[Group, ...]:
    """The groups a server asks detail of (``409``): those whose digest over ``mine``
    (the server's knowledge restricted to what the site may read) differs from the
    site's, or that one side lists and the other does not, less those already in
    ``detail``. Empty when the request has no digests."""
    if request.digests is None:
        return ()
    length, theirs = request.digests
    site = {(c, g): d for c, g, d in theirs}
    server = {(c, g): d for c, g, d in mine.group_digests(length)}
    detail = set(request.detail)
    return tuple(
        sorted(
            group
            for group in site.keys() | server.keys()
            if site.get(group) != server.get(group) and group not in detail
        )
    )


def effective_knowledge(request: PullRequest, mine: Knowledge) -> Knowledge:
    """What the server takes the site to hold: its stated knowledge, and for every group
    outside ``detail`` (equal digests, checked by ``differing_groups``) the server's own
    streams of it, so the delta ``mine - effective`` is the detail groups' only."""
    if request.digests is None:
        return request.knowledge
    length = request.digests[0]
    detail = set(request.detail)
    settled = mine.only_streams(
        s for s in mine.streams() if _group_of(s.collection, s.prefix, length) not in detail
    )
    return request.knowledge.union(settled)


def encode_groups(groups: tuple[Group, ...]) -> bytes:
    """The ``409`` body: the canonical array of ``[collection, group]``, sorted."""
    return packb([[c, g] for c, g in sorted(set(groups))])


def decode_groups(body: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Group, ...]:
    """Parse a ``409`` body (from the server: still checked, a client bounds what it
    reads)."""
    if type(body) is not bytes:
        raise BundleFormatError("a groups body is bytes")
    if len(body) > limits.max_header_bytes:
        raise LimitExceededError("groups body larger than max_header_bytes")
    value = unpack(body, "groups", limits, max_depth=2, canonical=True)
    return _groups(value, "groups", Budget(limits.max_decode_bytes, "groups"), limits)
