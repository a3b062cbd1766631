"""Hypothesis strategies for the format-3 codecs: changes of one stream, scopes,
partitions and knowledge, drawn from small alphabets so that front coding, shared
prefixes, dictionary coding and repeated partitions all happen often."""

from __future__ import annotations

from hypothesis import strategies as st

from offsync.change import DELETE, ERASE, PUT, Change, ChangeId, canonical_fields, erase_fields
from offsync.identity import Identity
from offsync.scope import Partition, Scope, Stream

#: A real signing key (segments are signed) and two more origins for parents/knowledge.
SIGNER = Identity(bytes(range(32)), "signer")
ORIGINS: tuple[bytes, ...] = (SIGNER.public_key, bytes([0xAA]) * 32, bytes([0x11]) * 32)
COLLECTIONS = ("residents", "doses", "lots")
#: Scope and partition prefixes nest (3 ⊂ 35 ⊂ 351 ⊂ 3519) so that scopes overlap.
PREFIXES = ("", "3", "35", "351", "3519", "36", "4", "é")

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.sampled_from(["Islam", "Kristen", "Hindu"])  # repeats: dictionary-coded columns
)
field_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "é", "z", ""]), inner, max_size=4)
    ),
    max_leaves=12,
)
field_maps = st.dictionaries(st.sampled_from(["name", "sex", "address", "dose", "x"]), field_values)


@st.composite
def stream_changes(
    draw: st.DrawFn, *, prefix: str = "3519", first_seq: int = 1, max_changes: int = 12
) -> list[Change]:
    """A run of consecutive changes of stream (SIGNER, ("residents", prefix))."""
    n = draw(st.integers(1, max_changes))
    suffixes = st.sampled_from(["", "0", "01", "010", "0101", "1", "11", "é", "\U0001f600"])
    authors = st.none() | st.sampled_from(["clerk-1", "clerk-2", "é" * 3])
    out: list[Change] = []
    hlc = draw(st.integers(0, 1 << 62))
    for i in range(n):
        seq = first_seq + i
        key = prefix + draw(suffixes) + draw(suffixes)
        if not key:
            key = "k"
        op = draw(st.sampled_from([PUT, PUT, PUT, DELETE, ERASE]))
        if op == PUT:
            fields: bytes | None = canonical_fields(draw(field_maps))
        elif op == ERASE:
            fields = erase_fields(draw(st.text(max_size=5)))
        else:
            fields = None
        own = [ChangeId(SIGNER.public_key, s) for s in range(max(1, seq - 3), seq)]
        other = [ChangeId(ORIGINS[1], s) for s in (1, 2, 7)]
        parents = tuple(sorted(draw(st.sets(st.sampled_from(own + other), max_size=3))))
        hlc = max(0, min(hlc + draw(st.integers(-5, 1 << 20)), (1 << 63) - 1))
        out.append(
            Change(
                SIGNER.public_key,
                seq,
                hlc,
                "residents",
                key,
                op,
                fields,
                parents,
                prefix,
                draw(st.sampled_from([0, 1, 7, (1 << 32) - 1])),
                draw(authors),
            )
        )
    return out


partitions = st.builds(Partition, st.sampled_from(COLLECTIONS), st.sampled_from(PREFIXES))


@st.composite
def scopes(draw: st.DrawFn, depth: int = 2) -> Scope:
    """A scope from include lists, everything and nothing, combined by |, & and -."""
    if depth == 0 or draw(st.booleans()):
        kind = draw(st.sampled_from(["list", "list", "everything", "nothing"]))
        if kind == "everything":
            return Scope.everything()
        if kind == "nothing":
            return Scope.nothing()
        spec = draw(
            st.dictionaries(
                st.sampled_from(COLLECTIONS),
                st.lists(st.sampled_from(PREFIXES), max_size=3),
                max_size=3,
            )
        )
        return Scope(spec)
    a, b = draw(scopes(depth - 1)), draw(scopes(depth - 1))
    op = draw(st.sampled_from(["|", "&", "-"]))
    return a | b if op == "|" else a & b if op == "&" else a - b


@st.composite
def interval_sets(draw: st.DrawFn) -> set[int]:
    return set(draw(st.lists(st.integers(1, 40), max_size=12)))


@st.composite
def knowledge_models(draw: st.DrawFn) -> dict[Stream, set[int]]:
    """A model of knowledge: each stream's set of seqs."""
    streams = draw(
        st.lists(st.builds(Stream, st.sampled_from(ORIGINS), partitions), max_size=8, unique=True)
    )
    model = {s: draw(interval_sets()) for s in streams}
    return {s: seqs for s, seqs in model.items() if seqs}


def intervals_of(seqs: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
