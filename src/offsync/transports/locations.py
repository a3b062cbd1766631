"""From a location to the transport that reaches it (dulwich's ``get_transport_and_path``).

An application, a configuration file or the command line names the other side as text:
a server's URL, a shared folder's path, a courier disk's mount point.
``open_transport(location, me, peer, **options)`` turns that into the right transport,
with the options that transport takes; ``parse_location`` only says which one it is.

How a location is read (docs/transports.md, "Opening a transport from a location"):

* ``http://HOST...`` or ``https://HOST...``: ``HTTPTransport`` (the ``http`` extra).
* Any other ``scheme://``: refused; offsync has no transport for it.
* Anything else is a path: a shared folder (``FolderTransport``), or with
  ``kind="disk"`` a courier disk mounted there (``DiskTransport``).

A disk is never guessed from what the directory holds: a fresh disk holds nothing yet,
and a network share is a mount point as much as a disk is. The caller says it, as the
command line's ``disk`` commands do. What can be checked without connecting is checked
at once: a URL's host, that a folder exists (a typo must not create a folder somewhere
else), that every option applies to the transport. Those are ``UsageError``s, as is an
``http`` location without the ``http`` extra. A disk that is not mounted is a
``TransportError``, as in ``DiskTransport``: plugging it in and running again helps.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from ..errors import TransportError, UsageError
from ..identity import Identity, SiteRef, key_of
from .base import Transport
from .disk import DiskTransport
from .folder import FolderTransport

__all__ = ["Kind", "Location", "open_transport", "parse_location"]

#: The kinds of location: a server, a shared folder, a courier disk.
Kind = Literal["http", "folder", "disk"]
KINDS: tuple[Kind, ...] = ("http", "folder", "disk")
_A = {"http": "an HTTP", "folder": "a folder", "disk": "a disk"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a transport goes: ``kind`` and ``address`` (a URL, or a directory's path)."""

    kind: Kind
    address: str

    @property
    def path(self) -> Path:
        """The directory of a folder or a disk."""
        return Path(self.address)

    def __str__(self) -> str:
        return self.address


def parse_location(
    location: str | os.PathLike[str] | Location, kind: Kind | None = None
) -> Location:
    """Which transport ``location`` means, checked as far as it can be without opening it.

    ``kind`` says what the caller expects (``"disk"`` to read a path as a courier disk's
    mount point; the default reads it as a shared folder). ``UsageError`` for a location
    that cannot name an offsync transport, or not the kind asked for; ``TransportError``
    for a disk that is not mounted.
    """
    if kind is not None and kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if isinstance(location, Location):
        if kind is not None and kind != location.kind:
            raise UsageError(f"{location} is a {location.kind} location, not a {kind}")
        return location
    if isinstance(location, os.PathLike):
        return _directory(os.fspath(location), kind)
    if not isinstance(location, str) or not location:
        raise UsageError("a location is a URL or a path (str or os.PathLike), not empty")
    scheme = _SCHEME.match(location)
    if scheme is None:
        return _directory(location, kind)
    name = scheme.group(1).lower()
    if name not in ("http", "https"):
        raise UsageError(
            f"{location} is neither an http(s) URL nor a folder: offsync has no "
            f"transport for {name}://"
        )
    if kind not in (None, "http"):
        raise UsageError(f"{location} is a URL, not the path of a {kind}")
    if not urlsplit(location).hostname:
        raise UsageError(f"{location} names no host")
    return Location("http", location)


def _directory(path: str, kind: Kind | None) -> Location:
    if kind == "http":
        raise UsageError(f"{path} is not an http(s) URL")
    if kind == "disk":
        if not Path(path).is_dir():
            raise TransportError(f"no disk mounted at {path}")
        return Location("disk", path)
    if not Path(path).is_dir():
        raise UsageError(f"{path} is neither an http(s) URL nor a folder")
    return Location("folder", path)


@overload
def open_transport(
    location: str | os.PathLike[str] | Location,
    me: SiteRef,
    peer: SiteRef | None = None,
    *,
    kind: Literal["disk"],
    **options: Any,
) -> DiskTransport: ...


@overload
def open_transport(
    location: str | os.PathLike[str] | Location,
    me: SiteRef,
    peer: SiteRef | None = None,
    *,
    kind: Literal["folder"],
    **options: Any,
) -> FolderTransport: ...


@overload
def open_transport(
    location: str | os.PathLike[str] | Location,
    me: SiteRef,
    peer: SiteRef | None = None,
    *,
    kind: Kind | None = None,
    **options: Any,
) -> Transport: ...


def open_transport(
    location: str | os.PathLike[str] | Location,
    me: SiteRef,
    peer: SiteRef | None = None,
    *,
    kind: Kind | None = None,
    **options: Any,
) -> Transport:
    """The transport that reaches ``location``, for the site ``me``, towards ``peer``.

    ``me`` is this site: for a folder or a disk its key is enough (a key, an
    ``Identity``, a ``Replica``); an HTTP transport signs its requests, so it needs the
    ``Identity`` or the ``Replica``. ``peer`` is the other side: a folder's or a disk's
    destination (without one, the transport only receives), a server's key for HTTP
    (answers signed by another key are refused; ``server_key`` is the same option).
    ``kind`` and the reading of ``location``: see ``parse_location``. ``options`` go to
    the transport's constructor (``encrypt``, ``max_bundle_bytes``, ``limits`` for all;
    ``assume_free_bytes`` for a disk; ``timeout``, ``max_retries`` for HTTP...); one the
    transport does not take is a ``UsageError`` naming those it does.
    """
    where = parse_location(location, kind)
    if where.kind == "http":
        return _open_http(where.address, me, peer, options)
    cls = DiskTransport if where.kind == "disk" else FolderTransport
    _check_options(cls, where.kind, options)
    return cls(where.path, me, peer, **options)


def _open_http(url: str, me: SiteRef, peer: SiteRef | None, options: dict[str, Any]) -> Transport:
    identity = me if isinstance(me, Identity) else getattr(me, "identity", None)
    if not isinstance(identity, Identity):
        raise UsageError(
            "an HTTP transport signs its requests: give the site's Identity or Replica, "
            "not only its key"
        )
    if peer is not None:
        if options.get("server_key") is not None:
            raise UsageError("give the server's key once: as peer or as server_key")
        options = {**options, "server_key": key_of(peer)}
    try:
        from .http import HTTPTransport
    except ImportError as exc:  # the http extra is missing: the message says which
        raise UsageError(str(exc)) from exc
    _check_options(HTTPTransport, "http", options)
    return HTTPTransport(url, identity, **options)


def _check_options(cls: type[Transport], kind: Kind, options: dict[str, Any]) -> None:
    """Refuse, by name, the options ``cls`` does not take (rather than a ``TypeError``)."""
    takes = [
        name
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)}: not an option of {_A[kind]} transport "
            f"({cls.__name__} takes {', '.join(takes)})"
        )
