"""A real uvicorn server on a loopback port, in a background thread, for the HTTP tests.

Every answer an offsync app gives through ``LiveServer`` is recorded (``ANSWERS``) and,
after each test, checked against the OpenAPI document the app serves (``problems``, run
by the ``answers_match_the_openapi_document`` fixture of conftest.py): a documented
status of a documented operation, the documented media type, and a JSON body that
matches its schema with no field the schema does not name.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from typing import Any, NamedTuple

import uvicorn
from jsonschema import Draft202012Validator
from starlette.types import Message, Receive, Scope, Send

from offsync.server import ServerState, openapi


class Answer(NamedTuple):
    """One answer of an offsync app, as it left the app."""

    method: str
    path: str
    status: int
    media: str
    body: bytes


#: Answers of offsync apps since the last check (uvicorn threads append, tests read).
ANSWERS: list[Answer] = []


class Recorder:
    """ASGI middleware: records each answer before its last byte is sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                media = _media(start)
                if media == "application/json":
                    body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    ANSWERS.append(
                        Answer(scope["method"], scope["path"], start["status"], media, bytes(body))
                    )
            await send(message)

        await self.app(scope, receive, recording)


def _media(start: dict[str, Any]) -> str:
    headers: dict[bytes, bytes] = dict(start.get("headers", []))
    return headers.get(b"content-type", b"").decode().split(";")[0].strip().lower()


def _closed(schema: Any) -> Any:
    """A copy in which every object schema names all the fields it allows."""
    schema = copy.deepcopy(schema)
    for value in schema["components"]["schemas"].values():
        if value.get("type") == "object":
            value["additionalProperties"] = False
    return schema


_DOCUMENT = openapi()
_CLOSED = _closed(_DOCUMENT)
_PATHS = [
    (re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(p)) + "$"), p)
    for p in _DOCUMENT["paths"]
]


def operation(answer: Answer) -> tuple[str, str] | None:
    """The documented operation (path template, method) an answer is to, if any."""
    template = next((t for pattern, t in _PATHS if pattern.match(answer.path)), None)
    method = "get" if answer.method == "HEAD" else answer.method.lower()
    if template is None or method not in _DOCUMENT["paths"][template]:
        return None  # Starlette's 404 or 405: not an operation of the document
    return template, method


def problems(answer: Answer) -> list[str]:
    """What is wrong with an answer by the OpenAPI document (nothing: an empty list)."""
    found = operation(answer)
    if found is None:
        return []
    template, method = found
    where = f"{answer.method} {answer.path} -> {answer.status}"
    responses = _DOCUMENT["paths"][template][method]["responses"]
    documented = responses.get(str(answer.status))
    if documented is None:
        return [f"{where}: status not documented for {method.upper()} {template}"]
    content = documented.get("content", {})
    if not content or (not answer.body and answer.media == ""):
        return []  # nothing documented, or no body at all (a client that went away)
    if answer.media not in content:
        return [f"{where}: {answer.media or 'no media type'}, documented {sorted(content)}"]
    schema = content[answer.media].get("schema")
    if schema is None:
        return []
    validator = Draft202012Validator({**schema, "components": _CLOSED["components"]})
    try:
        value = json.loads(answer.body)
    except ValueError as exc:
        return [f"{where}: not JSON ({exc})"]
    return [f"{where}: {error.message} (in {value})" for error in validator.iter_errors(value)]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class LiveServer:
    """``with LiveServer(app) as srv: srv.url`` — uvicorn on 127.0.0.1, a free port.

    ``port=0`` lets the kernel choose; pass a port to restart on the one a previous
    server used (the tests that stop a server and start a new one do).
    """

    def __init__(self, app: Any, port: int = 0) -> None:
        # An offsync app's answers are recorded for the OpenAPI check; a composite app
        # (a proxy, a portal, a mount) is not an offsync app's answer as a whole.
        offsync_app = isinstance(getattr(getattr(app, "state", None), "offsync", None), ServerState)
        self.app = Recorder(app) if offsync_app else app
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
        self._server = server = _Server(config)
        self._thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        self._thread.start()
        if not server.ready.wait(60) or not server.started:
            self.stop()
            raise RuntimeError("uvicorn did not start")
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def _run(self) -> None:
        assert self._server is not None
        try:
            self._server.run()
        finally:
            self._server.ready.set()  # a failed startup must not leave start() waiting

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "uvicorn did not stop"
        self._server = self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
