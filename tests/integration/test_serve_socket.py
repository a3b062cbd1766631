"""``offsync serve`` listens on a socket that names TCP, so that asyncio turns Nagle's
algorithm off on the connections it accepts (with proto 0 it does not, and each answer
written in two parts waited ~40 ms for the client's delayed ACK)."""

from __future__ import annotations

import socket

from offsync.cli.serve import _listen
from offsync.demo import free_loopback_socket


def test_the_listening_sockets_name_tcp() -> None:
    sock, url = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and url.startswith("http://127.0.0.1:")
        client = socket.create_connection(sock.getsockname()[:2])
        accepted, _ = sock.accept()
        with client, accepted:
            assert accepted.proto == socket.IPPROTO_TCP  # what asyncio checks
    finally:
        sock.close()
    demo = free_loopback_socket()
    with demo:
        assert demo.proto == socket.IPPROTO_TCP
