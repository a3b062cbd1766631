"""Public conformance checks, for offsync's own parts and for integrators' own.

* ``check_store(make_store)`` — a store implementation keeps the Store contract.
* ``check_blob_store(make_store)`` — a store keeps blobs as ``BlobStore`` says.
* ``check_transport(make_pair)`` — a transport delivers bundles and knowledge.
* ``check_policy(policy)`` — a custom merge policy is a function of the set of changes.

They need ``hypothesis`` and ``pytest`` (the ``test`` extra) and are imported lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_blob_store", "check_policy", "check_store", "check_transport"]

_HOMES = {
    "check_blob_store": "offsync.testing.blobs",
    "check_store": "offsync.testing.stores",
    "check_transport": "offsync.testing.transports",
    "check_policy": "offsync.testing.policies",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
