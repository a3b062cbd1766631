"""Transports: the paths bundles take between replicas.

``Transport`` is the interface (see ``transports.base``); ``offsync.sync`` drives a round
over any of them. Shipped: ``MemoryTransport`` (tests), ``FolderTransport`` (a shared
directory), ``DiskTransport`` (a courier's removable disk) and, with the ``http``
extra, ``offsync.transports.http.HTTPTransport``.
"""

from __future__ import annotations

from .base import DEFAULT_MAX_BUNDLE, Refused, Transport
from .disk import DiskTransport
from .folder import FolderTransport
from .memory import LoopbackTransport, MemoryTransport

__all__ = [
    "DEFAULT_MAX_BUNDLE",
    "DiskTransport",
    "FolderTransport",
    "LoopbackTransport",
    "MemoryTransport",
    "Refused",
    "Transport",
]
