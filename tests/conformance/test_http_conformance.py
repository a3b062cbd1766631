"""The HTTP transport passes the public conformance check against a real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from offsync import Replica
from offsync.server import create_app
from offsync.testing import check_transport
from offsync.transports import Transport
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer


def _no_sleep(delay: float) -> None:
    pass


@contextmanager
def http_pair(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
    with LiveServer(create_app(b)) as srv, HTTPTransport(srv.url, a.identity, sleep=_no_sleep) as t:
        yield t, None


@contextmanager
def sealed_http_pair(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
    with (
        LiveServer(create_app(b)) as srv,
        HTTPTransport(
            srv.url,
            a.identity,
            server_key=b.id,
            encrypt=True,
            pull_encrypted=True,
            chunk_bytes=8 * 1024,  # the bounded scenario's bundles go up in chunks
            sleep=_no_sleep,
        ) as t,
    ):
        yield t, None


def test_http_conforms() -> None:
    check_transport(http_pair)


def test_sealed_chunked_http_conforms() -> None:
    check_transport(sealed_http_pair)
