"""The protocol decisions of a replica, as pure functions over values.

Each module decides one job and returns a plan; ``offsync.replica`` runs the plans
against its store, in one transaction per bundle or write, and publishes its new state
when the transaction has committed. Nothing here reads or writes a store, a file or a
socket, so every decision can be tested with plain values (tests/unit/test_plan_*.py):

* ``admit``      — whether a segment's changes are applied or held back, and why
                   (clock, trust, validators), change by change where that applies;
* ``apply``      — the verdict on each segment of a bundle (apply, duplicate,
                   quarantine with a reason, fork evidence, refuse the bundle), what
                   to merge, own changes coming back after a restore, fork evidence;
* ``merge``      — which changes take the bulk path and which records are recomputed;
* ``write``      — the change a local write makes, or why it may not be made;
* ``seal``       — when to seal, and which own changes go into which segment;
* ``pack``       — what to send a peer with given knowledge, grouped into bundles
                   under a byte limit (a generator: a backlog is never all in memory);
* ``examine``    — re-examining held segments after trust or time changed;
* ``claims``     — receipts to keep, and whose claims on this site's seqs count;
* ``quarantine`` — what is dropped of unknown signers' data to stay within bounds.
"""
