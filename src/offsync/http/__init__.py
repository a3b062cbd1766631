"""The HTTP protocol of offsync, in one package (docs/http.md; the bytes: docs/spec.md §15).

Sans-IO, like the protocol core: no HTTP library, socket, file or clock (times are
passed in), importable without the ``http`` extra; the server and the client build and
read the same bytes with them.

* ``wire``      names every side agrees on: protocol version, media types, headers
* ``frames``    pull answers: bundles in length-prefixed frames, and ``FrameDecoder``,
                an incremental decoder (feed bytes, take events)
* ``ranges``    ``Content-Range`` of resumable uploads, parsed and formatted
* ``signing``   signed requests over the server's challenges
* ``bodies``    every request and answer body as a typed value (JSON and msgpack)
* ``refusals``  every error answer: status, body and headers, decided in one table
* ``openapi``   the endpoint table and the OpenAPI document built from it

With I/O:

* ``uploads``   resumable uploads on disk: partial files, locks, bounds (no HTTP library)
* ``server``    the ASGI app (Starlette): ``create_app``, routes as small functions
* ``routes``    the routes themselves; ``blobroutes`` the blob lane's, ``spoolroutes``
                a spooling server's uploads (held, answered 202)
* ``receive``   the one receive step of an upload (whole body or ``Content-Range``
                chunk, then the id check), for the direct and the spooled route
* ``answers``   what routes answer with: JSON bodies, no-store, receipts in base64
* ``client``    the client's side of httpx: failures and answers mapped in one place

``offsync.server`` and ``offsync.transports.http`` are the public faces of the last
three; ``offsync.httpwire`` re-exports the sans-IO names it always had.
"""
