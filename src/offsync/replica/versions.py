"""Schema versions in the replica: what opening it with newer schemas does.

Local writes record their collection's current version, and applying holds a change
newer than known (``plan.admit.change_verdict``, reason ``schema: …``) and stores older
puts upcast (``plan.schema.as_stored``: the store keeps one version per collection, so
a recompute folds without upcasting). Opened with a newer version of a collection (an
upgrade, docs/integrator-guide.md "Upgrade while offline"), the replica moves the
stored puts of that collection up to it and applies the changes it held for their
version; an older version is refused when it is opened (``Replica._check_schemas``).
"""

from __future__ import annotations

from ..change import PUT
from ..encoding import packb
from ..plan.schema import upgraded
from ..status import Kind
from .examine import _Examining

__all__: list[str] = []


class _Versions(_Examining):
    def _upgrade_schemas(self, before: dict[str, int]) -> None:
        """On open, ``before``: the versions the store kept. For each collection whose
        version went up: its stored puts read at the new version and its records
        recomputed, in one transaction with the new version kept (a crash between
        collections never upcasts twice); then the held segments are judged again (what
        was newer than known may be readable now). Meta ``schemas_recheck`` marks that
        judgement as owed until it is done, so a crash before it does not leave changes
        held for ever."""
        mine = {c: self.schemas.version(c) for c in self.schemas}
        due = {**before, **mine} != before
        if self.store.read_only or not (due or self.store.get_meta("schemas_recheck")):
            return
        with self._transaction():
            self.store.set_meta("schemas_recheck", b"1")
        kept = dict(before)
        for collection, version in mine.items():
            old = before.get(collection, 0)
            with self._transaction():
                if max(old, 1) < version:
                    self._upcast_stored(collection, old)
                kept[collection] = version
                self.store.set_meta("schemas", packb(sorted(kept.items())))
        held = {
            stream.origin
            for stream, s in self._st.segments.held_back()
            if s.status.kind is not Kind.FORK
        }
        if held:
            self._reexamine_round(held, False)
        with self._transaction():
            self.store.set_meta("schemas_recheck", b"")

    def _upcast_stored(self, collection: str, old: int) -> None:
        """Inside a transaction: the stored puts of ``collection`` (at version ``old``)
        at the current version, and its records recomputed."""
        keys = [(collection, r.key) for r in self.store.iter_records(collection)]
        for k in keys:
            puts = [c for c in self.store.changes_for(*k) if c.op == PUT and c.fields is not None]
            if puts:
                self.store.remove_changes(puts)
                self.store.add_changes(upgraded(puts, old, self.schemas))
        self._recompute(keys)
