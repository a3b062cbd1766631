"""Every body of the HTTP protocol as a typed value, shared by the server and the client.

JSON answers are frozen dataclasses: the server builds one and sends ``to_json()``; the
client reads one with ``from_json(value)``, which checks each field it knows (type,
pattern, allowed values; an absent required field) and ignores fields it does not know,
so a newer server may add some. The OpenAPI document's schemas are made from the same
fields (``schema()``), so what is documented is what is built and what is checked.

A field whose metadata says ``omit`` is left out of the JSON when it is None (the
upload status of an id the server holds nothing of has no ``total``); any other field
is always present, null when its type allows None.

The one msgpack body, the pull request, is here too (``encode_pull_request``).
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Self

from ..errors import RemoteDataError
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from .pull import PullRequest
from .wire import BUNDLE_ID_PATTERN

__all__ = [
    "ANSWER_BODIES",
    "BlobProgress",
    "Body",
    "ChallengeBody",
    "ErrorBody",
    "Health",
    "ServerInfo",
    "UploadProgress",
    "UploadResult",
    "UploadStatus",
    "decode_pull_request",
    "encode_pull_request",
]

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_HEX_PATTERN = "^([0-9a-f]{2})+$"
_KEY_PATTERN = "^[0-9a-f]{64}$"


def _omit(description: str = "") -> Any:
    """A field left out of the JSON when None."""
    return field(default=None, metadata={"omit": True, "description": description})


def _doc(description: str = "", pattern: str = "") -> Any:
    return field(metadata={"description": description, "pattern": pattern})


@dataclass(frozen=True, slots=True)
class _Spec:
    """What one field may hold in JSON."""

    name: str
    kind: type  # str, int, float or bool
    nullable: bool
    required: bool
    enum: tuple[str, ...] = ()
    pattern: str = ""
    description: str = ""

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.nullable
        kinds = (int, float) if self.kind is float else (self.kind,)
        ok = type(value) in kinds
        if ok and self.enum:
            ok = value in self.enum
        if ok and self.pattern:
            ok = re.search(self.pattern, str(value)) is not None
        return ok

    def schema(self) -> dict[str, Any]:
        kind = _JSON_TYPES[self.kind]
        out: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        if self.enum:
            out["enum"] = list(self.enum)
        if self.pattern:
            out["pattern"] = self.pattern
        if self.description:
            out["description"] = self.description
        return out


def _spec(f: Any, hint: Any) -> _Spec:
    nullable = False
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        (hint,) = args
    enum: tuple[str, ...] = ()
    if typing.get_origin(hint) is Literal:
        enum = typing.get_args(hint)
        hint = type(enum[0])
    if hint not in _JSON_TYPES:
        raise TypeError(f"a body field of type {hint!r} has no JSON form")
    omit = f.metadata.get("omit", False)
    return _Spec(
        f.name,
        hint,
        nullable=nullable and not omit,  # an omitted field is absent, never null
        required=not omit,
        enum=enum,
        pattern=f.metadata.get("pattern", ""),
        description=f.metadata.get("description", ""),
    )


_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _specs(cls: type[Body]) -> tuple[_Spec, ...]:
    if cls not in _SPECS:
        hints = typing.get_type_hints(cls)
        _SPECS[cls] = tuple(_spec(f, hints[f.name]) for f in fields(cls))  # type: ignore[arg-type]
    return _SPECS[cls]


class Body:
    """Base of the JSON bodies; subclasses are frozen, slotted, keyword-only dataclasses."""

    __slots__ = ()
    #: The body's name among the OpenAPI document's schemas.
    NAME: ClassVar[str]

    @classmethod
    def specs(cls) -> tuple[_Spec, ...]:
        return _specs(cls)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None or not f.metadata.get("omit", False):
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, value: object) -> Self:
        """Read a body; ``RemoteDataError`` saying what is wrong if it is not one."""
        if type(value) is not dict:
            raise RemoteDataError(f"{cls.NAME}: not a JSON object")
        given: dict[str, Any] = {}
        for spec in cls.specs():
            if spec.name not in value:
                if spec.required:
                    raise RemoteDataError(f"{cls.NAME}: no {spec.name}")
                continue
            item = value[spec.name]
            if not spec.accepts(item):
                raise RemoteDataError(f"{cls.NAME}: {spec.name} is not {spec.schema()}")
            given[spec.name] = float(item) if spec.kind is float and item is not None else item
        return cls(**given)

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The JSON schema of the body (open: other fields may be added later)."""
        specs = cls.specs()
        out: dict[str, Any] = {"type": "object"}
        if cls.__doc__:
            out["description"] = " ".join(cls.__doc__.split())
        out["required"] = [s.name for s in specs if s.required]
        out["properties"] = {s.name: s.schema() for s in specs}
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorBody(Body):
    """Why a request was refused: the offsync error class (or an HTTP word such as
    BadRequest, Conflict, Busy) and the reason in words."""

    NAME = "Error"
    error: str
    reason: str
    received: int | None = _omit("Bytes the server holds: resume the upload there (409)")
    limit: int | None = _omit("The largest bundle the server accepts, in bytes (413)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo(Body):
    """What the server is: its replica's key and its limits."""

    NAME = "Info"
    protocol: str
    replica: str = _doc("The replica's public key, hex", _KEY_PATTERN)
    label: str
    max_upload_bytes: int
    max_pull_bundle_bytes: int
    replay_window_seconds: float = _doc("How long a challenge stays good")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeBody(Body):
    """A fresh challenge to sign one request over."""

    NAME = "Challenge"
    challenge: str = _doc("Opaque to the client; send it back as Offsync-Challenge", _HEX_PATTERN)
    lifetime_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadStatus(Body):
    """How much of an upload the server holds (received null and complete true: the
    id was applied recently)."""

    NAME = "UploadStatus"
    id: str = _doc("", BUNDLE_ID_PATTERN)
    received: int | None
    total: int | None = _omit("The total the held bytes were sent for")
    complete: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadProgress(Body):
    """A chunk was stored and more are to come (incomplete), or the whole bundle is
    held durably by a spooling server, to be applied soon (held: ask again with
    ``Content-Range: bytes */TOTAL`` after Retry-After; it is not delivered yet)."""

    NAME = "UploadProgress"
    status: Literal["incomplete", "held"] = "incomplete"
    id: str = _doc("", BUNDLE_ID_PATTERN)
    received: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadResult(Body):
    """A bundle applied now, with its counts, or already applied (duplicate, counts
    left out); either way with the server's fresh receipt, the proof of delivery."""

    NAME = "UploadResult"
    status: Literal["applied", "duplicate"]
    id: str = _doc("", BUNDLE_ID_PATTERN)
    sender: str | None = _omit("The bundle's sender's key, hex")
    applied: int | None = _omit()
    duplicates: int | None = _omit()
    quarantined: int | None = _omit()
    conflicts: int | None = _omit()
    receipt: str = _doc("The server's fresh receipt, base64")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobProgress(Body):
    """How much of a blob the server holds after a chunk (``PUT /blobs/{hash}``):
    all of it and verified (complete), or the bytes held from its start (where the
    next chunk must start)."""

    NAME = "BlobProgress"
    status: Literal["complete", "incomplete"]
    hash: str = _doc("The blob's BLAKE2b-256, hex", BUNDLE_ID_PATTERN)
    received: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Health(Body):
    """The process answers (alive, GET /healthz), and its store is reachable and at the
    schema this offsync uses (ready, GET /readyz)."""

    NAME = "Health"
    status: Literal["alive", "ready"]


#: Every JSON answer body, in the order the OpenAPI document lists their schemas.
ANSWER_BODIES: tuple[type[Body], ...] = (
    ErrorBody,
    ServerInfo,
    ChallengeBody,
    UploadStatus,
    UploadProgress,
    UploadResult,
    BlobProgress,
    Health,
)


# -- the pull request: canonical msgpack -----------------------------------------------


def encode_pull_request(since: Knowledge, max_bytes: int, encrypt: bool) -> bytes:
    """The body of ``POST /pull`` stating ``since`` whole (no digests, no receipt known):
    shorthand for ``offsync.http.pull.PullRequest``."""
    return PullRequest(since, max_bytes, encrypt).encode()


def decode_pull_request(
    body: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[Knowledge, int, bool]:
    """Parse a pull request body (untrusted): ``(knowledge, max_bytes, encrypt)``; the
    whole request is ``PullRequest.decode``."""
    request = PullRequest.decode(body, limits)
    return request.knowledge, request.max_bytes, request.encrypt
