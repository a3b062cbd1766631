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

from ..plan.schema import upgraded
from ..status import Kind
from .examine import _Examining

__all__: list[str] = []


class _Versions(_Examining):
    def _upgrade_schemas(self, before: dict[str, int]) -> None:
        """After the schemas' versions went up from ``before``: the stored puts of each
        upgraded collection read at the new version, records recomputed, and the held
        segments judged again (what was newer than known may be readable now). One
        transaction per collection; the re-examination writes its own."""
        if self.store.read_only:
            return
        for collection in self.schemas:
            old = before.get(collection, 0)
            if max(old, 1) >= self.schemas.version(collection):
                continue
            with self._transaction():
                keys = [(collection, r.key) for r in self.store.iter_records(collection)]
                for k in keys:
                    puts = [c for c in self.store.changes_for(*k) if c.fields is not None]
                    puts = [c for c in puts if c.op == 0]
                    if puts:
                        self.store.remove_changes(puts)
                        self.store.add_changes(upgraded(puts, old, self.schemas))
                self._recompute(keys)
        held = {
            stream.origin
            for stream, s in self._st.segments.held_back()
            if s.status.kind is not Kind.FORK
        }
        if held:
            self._reexamine_round(held, False)
