"""A site restored from backups taken at random points, against a district: nothing lost
or doubled.

The site writes, seals (a pack whose bundle the courier loses), sends to the district,
hears from it, is backed up (a copy of its SQLite file) and restored from any earlier
backup, at random. After each restore it hears from the district first (as
``offsync restore`` makes it wait for a peer), and may then write whenever writing is
allowed. The district is the site's only peer, so whatever it holds of the site is all
that left the site. Checked throughout: a write the site accepts is never refused
afterwards for want of what the district holds (a sync brings it back); at the end, a
full exchange brings both to the same state, holding every change that was not lost
with the site's disk (its backup, what the district held, and every write accepted
since), with no fork and nothing quarantined on either side.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from offsync import Identity, Replica
from offsync.errors import SequenceReuseError

SITE = Identity(bytes([2]) * 32, "saradan")
DISTRICT = Identity(bytes([5]) * 32, "district")
RESIDENTS = "residents"


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def site_keys(rep: Replica) -> set[str]:
    """The keys of the records the site wrote (each key is written once)."""
    return {r.key for r in rep.store.iter_records(RESIDENTS) if r.fields is not None}


class Restores(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "site.sqlite"
        self.site = Replica.open(str(self.path), identity=SITE)
        self.district = Replica.open(":memory:", identity=DISTRICT)
        self.written = 0
        self.kept: set[str] = set()  # what must survive: the site's keys, as the model says
        self.backups: list[tuple[Path, set[str]]] = []

    def _reopen(self) -> None:
        self.site = Replica.open(str(self.path), identity=SITE)

    @rule(n=st.integers(1, 3))
    def write(self, n: int) -> None:
        for _ in range(n):
            key = f"{self.written:016d}"
            try:
                self.site.put(RESIDENTS, key, {"n": self.written})
            except SequenceReuseError:
                # Refused only while the district holds own seqs the site has not
                # sealed: a sync brings them back, and then the write goes through.
                send(self.district, self.site)
                self.site.put(RESIDENTS, key, {"n": self.written})
            self.written += 1
            self.kept.add(key)

    @rule(way=st.sampled_from(["site to district", "district to site", "seal, bundle lost"]))
    def exchange(self, way: str) -> None:
        if way == "site to district":
            send(self.site, self.district)
        elif way == "district to site":
            send(self.district, self.site)
        else:
            self.site.pack(self.district.knowledge())  # seals; the courier loses it

    @rule()
    def back_up(self) -> None:
        self.site.close()
        copy = self.path.with_name(f"backup-{len(self.backups)}.sqlite")
        shutil.copyfile(self.path, copy)
        self.backups.append((copy, set(self.kept)))
        self._reopen()

    @precondition(lambda self: self.backups)
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        self.restore_from(data.draw(st.sampled_from(self.backups)))

    def restore_from(self, backup: tuple[Path, set[str]]) -> None:
        copy, held = backup
        self.site.close()
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        shutil.copyfile(copy, self.path)
        self._reopen()
        # What survives the lost disk: the backup, and what the district holds.
        self.kept = held | site_keys(self.district)
        # The site hears from the district before it writes (the restore's wait).
        for bundle in self.district.pack(self.district.knowledge(), always=True):
            self.site.apply(bundle)

    @invariant()
    def nothing_forks(self) -> None:
        assert self.site.forks() == [] and self.district.forks() == []
        assert self.site.quarantined() == [] and self.district.quarantined() == []
        assert site_keys(self.site) <= self.kept

    def teardown(self) -> None:
        try:
            for _ in range(2):
                send(self.site, self.district)
                send(self.district, self.site)
            assert not self.site.has_unsealed()
            assert site_keys(self.site) == site_keys(self.district) == self.kept
            assert self.site.state_digest() == self.district.state_digest()
            assert self.site.knowledge() == self.district.knowledge()
            self.nothing_forks()
        finally:
            self.site.close()
            self.district.close()
            self.dir.cleanup()


pytestmark = pytest.mark.slow


def test_two_sealed_cuts_of_one_history_after_two_restores() -> None:
    """Seed 13, as steps: 1..1 sealed and lost, backed up; restored from before it,
    1..2 sealed and sent; restored with 1..1 again. It gives way: no fork."""
    m = Restores()
    try:
        m.write(1)
        m.back_up()  # b0: X1 unsealed
        m.exchange("seal, bundle lost")  # 1..1
        m.back_up()  # b1
        m.restore_from(m.backups[0])
        m.write(1)
        m.exchange("site to district")  # the district holds 1..2
        m.restore_from(m.backups[1])
        m.nothing_forks()
        m.write(1)
        m.nothing_forks()
    finally:
        m.teardown()


TestRestores = Restores.TestCase
#: A heavier run (seed 13 was found so): RESTORE_EXAMPLES=400 RESTORE_STEPS=50, with
#: pytest's ``--hypothesis-seed=N`` under a profile that is not derandomized ("dev").
TestRestores.settings = settings(
    settings.default,
    max_examples=int(os.environ.get("RESTORE_EXAMPLES", min(settings().max_examples, 60))),
    stateful_step_count=int(os.environ.get("RESTORE_STEPS", 30)),
)
