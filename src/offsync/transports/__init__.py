"""Transports: the paths bundles take between replicas.

``Transport`` is the interface (see ``transports.base``); ``offsync.sync`` drives a round
over any of them. Shipped: ``MemoryTransport`` (tests), ``FolderTransport`` (a shared
directory), ``DiskTransport`` (a courier's removable disk) and, with the ``http``
extra, ``offsync.transports.http.HTTPTransport``. ``open_transport`` turns a location
(a URL, a folder's path, a disk's mount point) into the right one
(``transports.locations``).
"""

from __future__ import annotations

from .base import DEFAULT_MAX_BUNDLE, Refused, Transport
from .disk import DiskTransport
from .folder import FolderTransport
from .locations import Location, open_transport, parse_location
from .memory import LoopbackTransport, MemoryTransport

__all__ = [
    "DEFAULT_MAX_BUNDLE",
    "DiskTransport",
    "FolderTransport",
    "Location",
    "LoopbackTransport",
    "MemoryTransport",
    "Refused",
    "Transport",
    "open_transport",
    "parse_location",
]
