"""The OpenAPI document is made from the endpoint table, is what the server serves and
what docs/http.md shows, and every answer a real server gives matches it.

The check of answers runs after every test that serves over ``tests.helpers.http.LiveServer``
(conftest.py); here a scenario draws every documented answer of every operation once,
so that none is documented without being given, nor given without being checked.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from offsync import Identity, Knowledge, Replica
from offsync.blobs import BlobRef, blob_hash
from offsync.encoding import packb
from offsync.errors import StorageFullError
from offsync.http.blobroutes import MAX_HELD_BODY
from offsync.http.bodies import encode_pull_request
from offsync.http.openapi import ENDPOINTS, docs_block
from offsync.http.pull import PullRequest
from offsync.http.signing import blob_get_message, sign_request
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.scope import Scope
from offsync.segment import hash32
from offsync.server import create_app, openapi
from offsync.stores.blobs import BlobStore
from offsync.stores.sqlblobs import SQLBlobStore
from offsync.stores.sqlite import SQLiteStore
from tests.helpers import ROOT
from tests.helpers.http import ANSWERS, Answer, LiveServer, operation, problems

ID = "ab" * 32


class FillingDisk(SQLiteStore):
    """A real SQLite store whose disk fills up when told: writes raise
    ``StorageFullError`` as the store does on ENOSPC."""

    full = False

    def add_segments(self, rows: Any) -> None:
        if self.full:
            raise StorageFullError("database or disk is full")
        super().add_segments(rows)

    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        if self.full:
            raise StorageFullError("database or disk is full")
        return super().record_nonce(nonce, expires, now)

    def probe(self) -> None:
        if self.full:
            raise StorageFullError("database or disk is full")
        super().probe()


def documented() -> set[tuple[str, str, int]]:
    return {
        (path, method, int(status))
        for path, methods in openapi()["paths"].items()
        for method, op in methods.items()
        for status in op["responses"]
    }


def bundle_of(records: int, label: str) -> bytes:
    site = Replica.open(":memory:", identity=Identity.generate(label=label))
    with site.batch():
        for i in range(records):
            site.put("residents", f"3519{i:012d}", {"n": i, "blob": os.urandom(2000)})
    (bundle,) = site.pack()
    site.close()
    return bundle


def pull(http: httpx.Client, centre: Replica, body: bytes, signed: bool = True) -> int:
    headers = {}
    if signed:
        challenge = bytes.fromhex(http.get("/challenge").json()["challenge"])
        headers = sign_request(Identity.generate(), centre.id, "pull", body, challenge)
    return http.post("/pull", content=body, headers=headers).status_code


def test_every_documented_answer_is_given_by_a_real_server_and_matches(tmp_path: Path) -> None:
    store = FillingDisk(str(tmp_path / "centre.sqlite"))
    centre = Replica(store, Identity.generate(label="centre"))
    centre.put("notices", "n1", {"text": "clinic closed friday"})
    small, large = bundle_of(3, "small"), bundle_of(20, "large")
    body = encode_pull_request(Knowledge(), 1 << 20, False)
    app = create_app(
        centre, upload_dir=tmp_path / "up", max_upload_bytes=len(large) - 1, metrics=True
    )
    busy = create_app(centre, max_in_flight=0, busy_timeout=0.05)
    refusing = create_app(centre, readable=lambda site: Scope.nothing())  # reads nothing
    with (
        LiveServer(app) as srv,
        LiveServer(busy) as jammed,
        LiveServer(refusing) as strict,
        httpx.Client(base_url=srv.url) as http,
    ):
        paths = ("/", "/challenge", "/knowledge", "/openapi.json", f"/bundles/{ID}")
        for path in (*paths, "/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 200
        assert httpx.get(jammed.url + "/metrics").status_code == 404  # metrics are off there
        assert http.get("/bundles/AB").status_code == 400
        small_id = hash32(small).hex()
        first = {"Content-Range": f"bytes 0-99/{len(small)}"}
        for status in (202, 409):  # the same chunk again: the server holds it already
            answer = http.put(f"/bundles/{small_id}", content=small[:100], headers=first)
            assert answer.status_code == status
        assert http.put(f"/bundles/{small_id}", content=small).status_code == 200
        assert http.put(f"/bundles/{small_id}", content=small).status_code == 200  # duplicate
        assert http.put(f"/bundles/{ID}", headers={"Content-Range": "x"}).status_code == 400
        assert http.put(f"/bundles/{hash32(large).hex()}", content=large).status_code == 413
        assert http.put(f"/bundles/{ID}", content=b"junk").status_code == 422
        assert pull(http, centre, body) == 200
        # A site's group digests (of nothing) differ from the centre's: it is asked for detail.
        digests = PullRequest.make(Knowledge(), 1 << 20, digests=True).encode()
        assert pull(http, centre, digests) == 409
        assert pull(http, centre, body, signed=False) == 401
        assert pull(http, centre, b"\x81\xa1x\x01") == 422
        assert pull(http, centre, b"x" * (centre.limits.max_header_bytes + 1), False) == 413
        with httpx.Client(base_url=strict.url) as strict_http:
            assert pull(strict_http, centre, body) == 403
        with centre.lock:  # a bulk import holds the replica
            assert httpx.get(jammed.url + "/knowledge").status_code == 503
        assert httpx.put(f"{jammed.url}/bundles/{'cd' * 32}", content=b"x").status_code == 503
        with httpx.Client(base_url=jammed.url) as jammed_http:
            assert pull(jammed_http, centre, body) == 503
        store.full = True
        other = bundle_of(2, "other")
        assert http.put(f"/bundles/{hash32(other).hex()}", content=other).status_code == 507
        assert pull(http, centre, body) == 507
        assert http.get("/readyz").status_code == 503
    given = [(operation(answer), answer.status) for answer in ANSWERS]
    seen = {(*op, status) for op, status in given if op is not None}
    assert seen == {d for d in documented() if not d[0].startswith("/blobs")}
    assert [problem for answer in ANSWERS for problem in problems(answer)] == []
    centre.close()


class FullBlobs(SQLBlobStore):
    """The blob store of a ``FillingDisk``: chunk writes fail when its disk is full."""

    disk: FillingDisk

    def _put_chunk(self, digest: bytes, pos: int, data: bytes) -> None:
        if self.disk.full:
            raise StorageFullError("database or disk is full")
        super()._put_chunk(digest, pos, data)


class FillingBlobDisk(FillingDisk):
    def blobs(self, limits: Limits = DEFAULT_LIMITS) -> BlobStore:
        store = FullBlobs(self, self._q, limits)
        store.disk = self
        return store


def signed(http: httpx.Client, centre: Replica, endpoint: str, body: bytes) -> dict[str, str]:
    challenge = bytes.fromhex(http.get("/challenge").json()["challenge"])
    return sign_request(Identity.generate(), centre.id, endpoint, body, challenge)


def test_every_documented_blob_answer_is_given_by_a_real_server_and_matches(
    tmp_path: Path,
) -> None:
    store = FillingBlobDisk(str(tmp_path / "centre.sqlite"))
    limits = Limits(blob_chunk_bytes=1000, max_blob_bytes=1 << 20)
    centre = Replica(store, Identity.generate(label="centre"), limits=limits)
    data, corrupt = os.urandom(1500), os.urandom(1500)
    ref = BlobRef(blob_hash(data), 1500, "image/jpeg")
    bad = BlobRef(blob_hash(b"not these bytes"), 1500, "image/jpeg")
    gone = BlobRef(blob_hash(b"a"), 1, "image/jpeg")
    centre.put("people", "p1", {"photo": ref.field(), "scan": bad.field(), "x": gone.field()})
    busy = create_app(centre, max_in_flight=0, busy_timeout=0.05, readable=None)
    app = create_app(centre, readable=None)
    refusing = create_app(centre, readable=lambda site: Scope.nothing())  # reads nothing
    with (
        LiveServer(app) as srv,
        LiveServer(busy) as jammed,
        LiveServer(refusing) as strict,
        httpx.Client(base_url=srv.url) as http,
    ):
        url = f"/blobs/{ref.hex}"

        def put(first: int, body: bytes, total: int = 1500, where: str = url) -> int:
            span = {"Content-Range": f"bytes {first}-{first + len(body) - 1}/{total}"}
            return http.put(where, content=body, headers=span).status_code

        def get(rng: str, where: str = ref.hex, sign: bool = True) -> int:
            message = blob_get_message(where, rng)
            headers = signed(http, centre, "blob", message) if sign else {}
            return http.get(f"/blobs/{where}", headers={**headers, "Range": rng}).status_code

        hashes = packb([ref.hash, bad.hash])
        held = signed(http, centre, "blobs-held", hashes)
        assert http.post("/blobs", content=hashes, headers=held).status_code == 200
        assert http.post("/blobs", content=hashes).status_code == 401
        junk = packb([b"short"])
        assert (
            http.post(
                "/blobs", content=junk, headers=signed(http, centre, "blobs-held", junk)
            ).status_code
            == 422
        )
        assert http.post("/blobs", content=b"x" * (MAX_HELD_BODY + 1)).status_code == 413
        assert put(0, data[:1000]) == 202
        assert put(0, data[:1000]) == 409
        assert put(1000, data[1000:]) == 200
        assert put(0, b"x", 1500, "/blobs/AB") == 400
        assert put(0, b"x", 1, f"/blobs/{'cd' * 32}") == 404
        assert put(0, b"x" * 1001) == 413
        assert put(0, corrupt[:1000], where=f"/blobs/{bad.hex}") == 202
        assert put(1000, corrupt[1000:], where=f"/blobs/{bad.hex}") == 422
        assert get("bytes=0-999") == 206
        assert get("bytes=0") == 400
        assert get("bytes=0-9", sign=False) == 401
        assert get("bytes=0-9", where=bad.hex) == 404
        assert get("bytes=0-1000") == 413
        assert get("bytes=1500-1501") == 416
        with httpx.Client(base_url=jammed.url) as jammed_http:
            assert (
                jammed_http.put(
                    url, content=b"x", headers={"Content-Range": "bytes 0-0/1500"}
                ).status_code
                == 503
            )
            headers = signed(jammed_http, centre, "blobs-held", hashes)
            assert jammed_http.post("/blobs", content=hashes, headers=headers).status_code == 503
            rng = "bytes=0-9"
            headers = signed(jammed_http, centre, "blob", blob_get_message(ref.hex, rng))
            answer = jammed_http.get(url, headers={**headers, "Range": rng})
            assert answer.status_code == 503
        with httpx.Client(base_url=strict.url) as strict_http:
            headers = signed(strict_http, centre, "blobs-held", hashes)
            assert strict_http.post("/blobs", content=hashes, headers=headers).status_code == 403
            rng = "bytes=0-9"
            headers = signed(strict_http, centre, "blob", blob_get_message(ref.hex, rng))
            assert strict_http.get(url, headers={**headers, "Range": rng}).status_code == 403
        store.full = True
        assert put(0, b"a", 1, f"/blobs/{gone.hex}") == 507
    given = [(operation(answer), answer.status) for answer in ANSWERS]
    seen = {(*op, status) for op, status in given if op is not None and op[0].startswith("/blobs")}
    assert seen == {d for d in documented() if d[0].startswith("/blobs")}
    assert [problem for answer in ANSWERS for problem in problems(answer)] == []
    centre.close()


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (Answer("PUT", f"/bundles/{ID}", 418, "application/json", b"{}"), "not documented"),
        (Answer("GET", "/", 200, "text/html", b"<html>"), "text/html"),
        (Answer("GET", "/knowledge", 200, "application/json", b"{}"), "documented"),
        (Answer("GET", "/challenge", 200, "application/json", b'{"challenge":"00"}'), "required"),
        (
            Answer(
                "GET",
                "/challenge",
                200,
                "application/json",
                b'{"challenge":"0","lifetime_seconds":1}',
            ),
            "does not match",
        ),
        (
            Answer(
                "PUT",
                f"/bundles/{ID}",
                409,
                "application/json",
                b'{"error":"C","reason":"r","held":1}',
            ),
            "Additional properties",
        ),
        (
            Answer("POST", "/pull", 401, "application/json", b'{"error":"S","reason":5}'),
            "not of type",
        ),
    ],
)
def test_the_check_finds_answers_that_do_not_match(answer: Answer, words: str) -> None:
    """The check can fail: each of these is not what the document says."""
    found = problems(answer)
    assert found and words in found[0], found


def test_the_check_leaves_what_is_not_an_operation_alone() -> None:
    assert problems(Answer("GET", "/nothing", 404, "text/plain", b"Not Found")) == []
    assert problems(Answer("DELETE", "/pull", 405, "text/plain", b"")) == []


def test_the_document_in_the_docs_is_the_served_one() -> None:
    """docs/http.md carries the document as ``python -m offsync.http.openapi --docs
    docs/http.md`` writes it: byte for byte, not only equal as JSON."""
    page = (ROOT / "docs" / "http.md").read_text()
    block = re.search(r"^## OpenAPI description.*?(^```json\n.*?^```\n)", page, re.S | re.M)
    assert block is not None, "docs/http.md lost its OpenAPI block"
    assert block.group(1) == docs_block(), "run: python -m offsync.http.openapi --docs docs/http.md"
    assert json.loads(docs_block()[len("```json\n") : -len("```\n")]) == openapi()


def test_every_endpoint_has_one_route_and_one_entry() -> None:
    from offsync.http.routes import ROUTES

    assert sorted(e.name for e in ENDPOINTS) == sorted(ROUTES)
    assert len({(e.path, e.method) for e in ENDPOINTS}) == len(ENDPOINTS)
