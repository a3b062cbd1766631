"""v3_receipt_bundle: the properties (hypothesis), moved from tests/unit/test_v3_receipt_bundle.py, where its examples are."""

from __future__ import annotations

from hypothesis import given

from offsync.knowledge import Knowledge
from offsync.receipt import statement_for
from offsync.scope import Scope, Stream
from tests.helpers.v3_strategies import intervals_of, knowledge_models
from tests.unit.test_receipt_bundle import CENTRE, SITE


@given(knowledge_models())
def test_statement_for_a_reader_is_bounded_by_what_it_needs(model: dict[Stream, set[int]]) -> None:
    k = Knowledge({s: intervals_of(v) for s, v in model.items()})
    reader = next(iter(model)).origin if model else SITE.public_key
    scope = Scope({"residents": ["35"]})
    stated = statement_for(k, reader=reader, scope=scope)
    assert stated <= k
    for s in k.streams():
        wanted = s.origin == reader or s.partition in scope
        assert (s in set(stated.streams())) is wanted
    # A centre (scope everything) is told only its own streams and what is carried.
    carried = Knowledge({s: k.get(s) for s in list(model)[:1]})
    to_centre = statement_for(
        k, reader=CENTRE.public_key, scope=Scope.everything(), carried=carried
    )
    assert to_centre == carried
