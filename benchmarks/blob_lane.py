"""The blob lane over HTTP: a site pushes N blobs of SIZE random bytes to a server
(uvicorn on a free loopback port, SQLite on both sides), over a link that breaks every
BREAK bytes put on the wire; it syncs again after each break, as a field PC would on
the next link. Then a second site pulls them all.

``--cut inflight`` (the default) breaks the link in the middle of the chunk that
crosses each BREAK bytes: the bytes of that chunk already on the wire are lost (the
server keeps no part of a chunk) and the chunk is sent again whole at the next sync,
from the offset the server holds. ``--cut between`` breaks it just before that chunk
(nothing is lost). Large blobs (``--size`` over ``blob_chunk_bytes``, 1 MiB) are cut
in the middle and resume there.

Prints the blob bytes, the chunk bytes delivered, the bytes put on the wire (delivered
plus lost to cuts) against the blob bytes, the syncs it took, and MB/s by wall time
and by CPU time of this process (server and client share it; wall time is noisy on a
shared machine). Nothing is asserted.

    .venv/bin/python benchmarks/blob_lane.py --n 200 --size 250000 --break-every 10000000
    .venv/bin/python benchmarks/blob_lane.py --n 4 --size 30000000 --break-every 10000000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.demo import free_loopback_socket, serving
from offsync.errors import TransportError
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import sync
from offsync.transports.http import HTTPTransport
from offsync.transports.httpblobs import HTTPBlobPeer


class BreakingPeer(HTTPBlobPeer):
    """Breaks the link each time ``every`` more bytes went on the wire: in the middle
    of a chunk (``inflight``: the part sent is lost) or just before it."""

    def __init__(self, transport: HTTPTransport, every: int, inflight: bool) -> None:
        super().__init__(transport)
        self.every, self.inflight = every, inflight
        self.since, self.breaks, self.wire, self.lost = 0, 0, 0, 0

    def put_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        if self.since + len(data) > self.every:
            self.breaks += 1
            part = self.every - self.since if self.inflight else 0
            self.wire, self.lost, self.since = self.wire + part, self.lost + part, 0
            raise TransportError("the link broke")
        self.since += len(data)
        self.wire += len(data)
        return super().put_chunk(ref, offset, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=250_000)
    parser.add_argument("--break-every", type=int, default=10_000_000)
    parser.add_argument("--cut", choices=("inflight", "between"), default="inflight")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def open_site(name: str) -> Replica:
            identity = Identity.generate(label=name)
            return Replica(SQLiteStore(str(root / f"{name}.sqlite")), identity)

        site, centre, other = open_site("site"), open_site("centre"), open_site("other")
        with site.batch():
            for i in range(args.n):
                ref = site.put_blob(os.urandom(args.size), "image/jpeg")
                site.put("people", f"p{i:06d}", {"photo": ref.field()})
        served = ExitStack()
        url = served.enter_context(serving(centre, free_loopback_socket(), readable=None))
        total = args.n * args.size
        wall, cpu = time.perf_counter(), time.process_time()
        with HTTPTransport(url, site.identity) as link:
            peer = BreakingPeer(link, args.break_every, args.cut == "inflight")
            link.blob_peer = lambda: peer  # type: ignore[method-assign]
            rounds = 0
            while True:
                rounds += 1
                report = sync(site, link)
                if report.ok:
                    break
        push = time.perf_counter() - wall, time.process_time() - cpu
        assert centre.missing_blobs().count == 0
        wall, cpu = time.perf_counter(), time.process_time()
        with HTTPTransport(url, other.identity) as link:
            pulled = sync(other, link)
        pull = time.perf_counter() - wall, time.process_time() - cpu
        assert other.missing_blobs().count == 0 and pulled.blobs is not None
        served.close()
        mb = total / 1e6
        print(
            f"== {args.n} blobs x {args.size} bytes = {mb:.1f} MB, link broken every "
            f"{args.break_every} bytes ({args.cut})"
        )
        print(
            f"push  syncs {rounds}  breaks {peer.breaks}  chunk bytes sent {peer.sent_bytes}"
            f"  ({peer.sent_bytes / total:.3f} x the blob bytes)"
        )
        print(
            f"push  wire bytes {peer.wire}  ({peer.wire / total:.3f} x the blob bytes;"
            f" {peer.lost} lost in chunks cut in flight, sent again)"
        )
        print(f"push  MB/s {mb / push[0]:.1f} wall  {mb / push[1]:.1f} cpu")
        print(
            f"pull  blobs {pulled.blobs.received}  bytes {pulled.blobs.received_bytes}"
            f"  MB/s {mb / pull[0]:.1f} wall  {mb / pull[1]:.1f} cpu"
        )
        for r in (site, centre, other):
            r.close()


if __name__ == "__main__":
    main()
