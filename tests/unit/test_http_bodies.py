"""The bodies of the HTTP protocol as typed values: the exact JSON the server sends, what
the client accepts, and the schemas the OpenAPI document states for them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from offsync import Knowledge
from offsync.errors import BundleFormatError, RemoteDataError
from offsync.http.bodies import (
    ANSWER_BODIES,
    Body,
    ChallengeBody,
    ErrorBody,
    ServerInfo,
    UploadProgress,
    UploadResult,
    UploadStatus,
    decode_pull_request,
    encode_pull_request,
)
from offsync.scope import Partition, Stream

ID = "ab" * 32

# Byte-exact: what the server sends (Starlette's JSONResponse: compact, keys in field
# order). The answers of offsync-http/2 servers before the bodies were typed, unchanged.
KNOWN: list[tuple[Body, str]] = [
    (
        ErrorBody(error="Conflict", reason="r", received=7),
        '{"error":"Conflict","reason":"r","received":7}',
    ),
    (
        ErrorBody(error="LimitExceededError", reason="r", limit=9),
        '{"error":"LimitExceededError","reason":"r","limit":9}',
    ),
    (ErrorBody(error="Busy", reason="r"), '{"error":"Busy","reason":"r"}'),
    (
        ServerInfo(
            protocol="offsync-http/2",
            replica=ID,
            label="centre",
            max_upload_bytes=1,
            max_pull_bundle_bytes=2,
            replay_window_seconds=300.0,
        ),
        '{"protocol":"offsync-http/2","replica":"' + ID + '","label":"centre",'
        '"max_upload_bytes":1,"max_pull_bundle_bytes":2,"replay_window_seconds":300.0}',
    ),
    (
        ChallengeBody(challenge="00ff", lifetime_seconds=300.0),
        '{"challenge":"00ff","lifetime_seconds":300.0}',
    ),
    (
        UploadStatus(id=ID, received=None, complete=True),
        '{"id":"' + ID + '","received":null,"complete":true}',
    ),
    (
        UploadStatus(id=ID, received=0, complete=False),
        '{"id":"' + ID + '","received":0,"complete":false}',
    ),
    (
        UploadStatus(id=ID, received=5, total=9, complete=False),
        '{"id":"' + ID + '","received":5,"total":9,"complete":false}',
    ),
    (
        UploadProgress(id=ID, received=5, total=9),
        '{"status":"incomplete","id":"' + ID + '","received":5,"total":9}',
    ),
    (
        UploadResult(
            status="applied",
            id=ID,
            sender=ID,
            applied=1,
            duplicates=2,
            quarantined=3,
            conflicts=4,
            receipt="cmVj",
        ),
        '{"status":"applied","id":"' + ID + '","sender":"' + ID + '","applied":1,'
        '"duplicates":2,"quarantined":3,"conflicts":4,"receipt":"cmVj"}',
    ),
    (
        UploadResult(status="duplicate", id=ID, receipt="cmVj"),
        '{"status":"duplicate","id":"' + ID + '","receipt":"cmVj"}',
    ),
]


def sent(body: Body) -> str:
    return json.dumps(body.to_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@pytest.mark.parametrize(("body", "wire"), KNOWN, ids=lambda v: type(v).__name__)
def test_known_answer_json(body: Body, wire: str) -> None:
    assert sent(body) == wire
    assert type(body).from_json(json.loads(wire)) == body  # the client reads it back


@pytest.mark.parametrize(("body", "wire"), KNOWN, ids=lambda v: type(v).__name__)
def test_every_known_answer_matches_its_schema(body: Body, wire: str) -> None:
    validator = Draft202012Validator(type(body).schema())
    assert list(validator.iter_errors(json.loads(wire))) == []


@pytest.mark.parametrize("kind", ANSWER_BODIES, ids=lambda k: k.NAME)
def test_schemas_are_valid_json_schema(kind: type[Body]) -> None:
    Draft202012Validator.check_schema(kind.schema())


def test_a_client_ignores_fields_it_does_not_know() -> None:
    """A newer server may add some."""
    value = {"challenge": "00ff", "lifetime_seconds": 300, "news": [1]}
    assert ChallengeBody.from_json(value) == ChallengeBody(challenge="00ff", lifetime_seconds=300.0)


@pytest.mark.parametrize(
    ("kind", "value", "words"),
    [
        (ErrorBody, ["error", "reason"], "not a JSON object"),
        (ErrorBody, {"error": "x"}, "no reason"),
        (ErrorBody, {"error": "x", "reason": 5}, "reason is not"),
        (ErrorBody, {"error": "x", "reason": "r", "limit": "9"}, "limit is not"),
        (ErrorBody, {"error": "x", "reason": "r", "limit": None}, "limit is not"),
        (UploadStatus, {"id": ID, "received": True, "complete": False}, "received is not"),
        (UploadStatus, {"id": ID.upper(), "received": 0, "complete": False}, "id is not"),
        (UploadStatus, {"id": ID, "received": 0, "complete": 0}, "complete is not"),
        (UploadResult, {"status": "stored", "id": ID, "receipt": "x"}, "status is not"),
        (UploadResult, {"status": "applied", "id": ID}, "no receipt"),
        (ChallengeBody, {"challenge": "abc", "lifetime_seconds": 1}, "challenge is not"),
        (ChallengeBody, {"challenge": "ab", "lifetime_seconds": "1"}, "lifetime_seconds"),
    ],
)
def test_a_client_refuses_what_is_not_the_body(kind: type[Body], value: Any, words: str) -> None:
    with pytest.raises(RemoteDataError, match=words):
        kind.from_json(value)


def test_pull_request_round_trip_and_refusals() -> None:
    since = Knowledge({Stream(b"\x01" * 32, Partition("residents")): [(1, 5)]})
    body = encode_pull_request(since, 1 << 20, True)
    assert decode_pull_request(body) == (since, 1 << 20, True)
    with pytest.raises(BundleFormatError, match="at least 65536"):
        decode_pull_request(encode_pull_request(since, 1000, False))
    with pytest.raises(BundleFormatError, match="a map of"):
        decode_pull_request(b"\x81\xa1x\x01")
