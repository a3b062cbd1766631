"""Sub-districts -> district -> centre by disk, folder and HTTP, with the centre going
down and coming back; at the end every replica is equal and every origin knows from
receipts that its changes reached the centre."""

from __future__ import annotations

from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.delivery import Delivery, Status
from offsync.errors import TransportError
from offsync.server import create_app
from offsync.sync import exchange
from offsync.transports import FolderTransport
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer


def _no_sleep(delay: float) -> None:
    pass


def _http(url: str, who: Replica, server: Replica) -> HTTPTransport:
    return HTTPTransport(url, who.identity, server_key=server.id, max_retries=2, sleep=_no_sleep)


def test_three_paths_through_a_relay_to_a_centre_that_goes_down(tmp_path: Path) -> None:
    def open_replica(label: str, identity: Identity | None = None) -> Replica:
        return Replica.open(
            str(tmp_path / f"{label}.sqlite"), identity=identity or Identity.generate(label)
        )

    by_disk, by_folder, by_http = (open_replica(x) for x in ("saradan", "kare", "wungu"))
    district, centre = open_replica("madiun"), open_replica("centre")
    subs = [by_disk, by_folder, by_http]
    for n, site in enumerate(subs):
        with site.batch():
            for i in range(40):
                site.put("residents", f"35190{n}01019{i:05d}", {"name": f"resident {n}-{i}"})
    centre.put("notices", "1", {"text": "new ID card format from 1 July"})

    usb = tmp_path / "usb"
    usb.mkdir()
    share = tmp_path / "share"
    status = {s.id: Delivery(s, centre=[centre.id]) for s in subs}
    first_change = {
        s.id: next(iter(s.store.changes_for("residents", f"35190{n}0101900000")))
        for n, s in enumerate(subs)
    }
    assert all(status[s.id].status(first_change[s.id].id) is Status.LOCAL for s in subs)

    with LiveServer(create_app(district)) as district_srv:
        centre_srv = LiveServer(create_app(centre)).start()
        centre_port = centre_srv.port
        try:
            # The disk site's courier and the folder site deliver first; the district
            # passes them on to the centre.
            exchange(by_disk, usb, peers=[district.id])
            sync(by_folder, FolderTransport(share, by_folder, district))
            exchange(district, usb)
            sync(district, FolderTransport(share, district, by_folder))
            with _http(centre_srv.url, district, centre) as up:
                sync(district, up)
            assert centre.knowledge().restrict_origins([by_disk.id]).count() == 40

            # The centre goes down; the HTTP site delivers to the district meanwhile.
            centre_srv.stop()
            centre.close()
            with _http(district_srv.url, by_http, district) as t:
                assert sync(by_http, t).sent_changes == 40
            down = f"http://127.0.0.1:{centre_port}"
            with _http(down, district, centre) as up, pytest.raises(TransportError):
                sync(district, up)

            # ... and comes back (same file, same key, same port).
            centre = open_replica("centre", centre.identity)
            centre_srv = LiveServer(create_app(centre), port=centre_port).start()
            for _ in range(3):
                with _http(centre_srv.url, district, centre) as up:
                    sync(district, up)  # up and back: the centre's receipt comes down
                # Receipts and data go back down every path.
                exchange(district, usb, peers=[by_disk.id])
                exchange(by_disk, usb, peers=[district.id])
                sync(district, FolderTransport(share, district, by_folder))
                sync(by_folder, FolderTransport(share, by_folder, district))
                with _http(district_srv.url, by_http, district) as t:
                    sync(by_http, t)
                if all(status[s.id].reached_centre() for s in subs):
                    break
        finally:
            centre_srv.stop()

    everyone = [*subs, district, centre]
    assert len({r.state_digest() for r in everyone}) == 1
    assert all(r.knowledge() == centre.knowledge() for r in everyone)
    assert centre.get("residents", "3519020101900039") == {"name": "resident 2-39"}
    assert by_disk.get("notices", "1") == {"text": "new ID card format from 1 July"}
    for s in subs:
        assert status[s.id].reached_centre(), f"{s!r} does not know its changes arrived"
        assert status[s.id].status(first_change[s.id].id) is Status.CENTRE
        assert status[s.id].record_status("residents", f"35190{subs.index(s)}0101900000") is (
            Status.CENTRE
        )
        assert centre.id in s.receipts()  # learnt through the district, not directly
    for r in everyone:
        r.close()
