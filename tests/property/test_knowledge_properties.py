"""v3_knowledge: the properties (hypothesis), moved from tests/unit/test_v3_knowledge.py, where its examples are."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offsync.knowledge import Knowledge, group_digest
from offsync.scope import Partition, Scope, Stream
from tests.helpers.v3_strategies import ORIGINS, intervals_of, knowledge_models, partitions

Model = dict[Stream, set[int]]


def of(model: Model) -> Knowledge:
    return Knowledge({s: intervals_of(seqs) for s, seqs in model.items()})


def model_of(k: Knowledge) -> Model:
    return {s: {q for a, b in k.get(s) for q in range(a, b + 1)} for s in k.streams()}


@given(knowledge_models(), knowledge_models())
def test_algebra_matches_the_model(x: Model, y: Model) -> None:
    kx, ky = of(x), of(y)
    assert model_of(kx) == x
    union = {s: x.get(s, set()) | y.get(s, set()) for s in {*x, *y}}
    assert model_of(kx | ky) == union
    diff = {s: x[s] - y.get(s, set()) for s in x}
    assert model_of(kx - ky) == {s: v for s, v in diff.items() if v}
    inter = {s: x[s] & y.get(s, set()) for s in x}
    assert model_of(kx & ky) == {s: v for s, v in inter.items() if v}
    assert (kx <= ky) == all(seqs <= y.get(s, set()) for s, seqs in x.items())
    assert kx.count() == sum(map(len, x.values()))
    for s, seqs in x.items():
        assert kx.max_seq(s) == max(seqs) and kx.count(s) == len(seqs)
        for q in range(1, 42):
            assert kx.contains(s, q) is (q in seqs)
        assert kx.contains_range(s, min(seqs), min(seqs))
        assert kx.overlaps(s, 1, 40)


@given(knowledge_models())
def test_wire_round_trip_and_one_form(x: Model) -> None:
    k = of(x)
    assert Knowledge.from_bytes(k.to_bytes()) == k
    assert Knowledge.from_wire(k.to_wire()).to_bytes() == k.to_bytes()
    assert eval(repr(k), {"Knowledge": Knowledge, "Stream": Stream, "Partition": Partition}) == k
    streams = list(k.streams())
    assert streams == sorted(streams)


@given(knowledge_models(), st.lists(st.sampled_from(ORIGINS), max_size=2))
def test_restriction_to_origins_and_streams(x: Model, origins: list[bytes]) -> None:
    k = of(x)
    assert model_of(k.restrict_origins(origins)) == {
        s: v for s, v in x.items() if s.origin in origins
    }
    chosen = list(x)[::2]
    assert model_of(k.only_streams(chosen)) == {s: x[s] for s in chosen}
    assert k.restrict(Scope.everything()) is k
    assert not k.restrict(Scope.nothing())


@given(knowledge_models(), st.integers(0, 3))
def test_group_digests_say_which_groups_differ(x: Model, length: int) -> None:
    k = of(x)
    digests = {(c, g): d for c, g, d in k.group_digests(length)}
    groups = {(s.collection, s.prefix[:length]) for s in x}
    assert set(digests) == groups
    for (c, g), d in digests.items():
        part = Knowledge({s: k.get(s) for s in x if (s.collection, s.prefix[:length]) == (c, g)})
        assert d == group_digest(part) and len(d) == 16
    if x:  # one more seq in one stream changes that group's digest only
        stream = next(iter(x))
        grown = {(c, g): d for c, g, d in k.with_range(stream, 41, 41).group_digests(length)}
        changed = {key for key in digests if digests[key] != grown[key]}
        assert changed == {(stream.collection, stream.prefix[:length])}


@given(partitions, partitions)
def test_partitions_are_shared_when_decoded(p: Partition, q: Partition) -> None:
    wire = [[o, [[*p, [1, 1]]]] for o in sorted(ORIGINS)]
    k = Knowledge.from_wire(wire)
    found = [next(iter(k.partitions(o))) for o in k.origins()]
    assert all(f is found[0] for f in found)
