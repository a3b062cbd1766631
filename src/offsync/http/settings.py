"""How a server is configured: one table of settings, read from flags or the environment.

Each ``Setting`` names a ``create_app`` option (or one of ``offsync serve``'s own: the
address, workers, logs), its flag, its ``OFFSYNC_*`` environment variable, its default
and its bounds. ``offsync serve`` makes its flags from the table (``offsync.cli.serve``)
and ``offsync.centre.app_from_env`` reads the same variables (``from_env``), so both
accept the same values and refuse the same mistakes with the same words. Sizes take
``K``, ``M`` and ``G`` (binary: ``16M`` is 16 MiB), durations ``s``, ``m``, ``h`` and
``d`` (``7d``); plain numbers are bytes and seconds. No setting holds a secret: the
key's passphrase comes from a file (``--passphrase-file``, ``OFFSYNC_PASSPHRASE_FILE``).

``readable`` takes the policies that can be said in one word (``auto``, ``certified``,
``everything``: ``offsync.http.readers``); finer ones are Python
(``create_app(readable=...)``, a function of the site key to its ``Scope``).
``reference`` names the deployment's reference collections (default: the replica's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..limits import DEFAULT_LIMITS
from ..logs import FORMATS, LEVELS
from ..replica import Replica
from ..scope import check_collection
from .readers import READABLE, certified_readers, readers

__all__ = [
    "APP_SETTINGS",
    "READABLE",
    "SERVE_SETTINGS",
    "SETTINGS",
    "Setting",
    "app_options",
    "certified_readers",
    "from_env",
    "parse_bytes",
    "parse_seconds",
]

_UNITS_BYTES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_UNITS_SECONDS = {"": 1.0, "S": 1.0, "M": 60.0, "H": 3600.0, "D": 86400.0}
_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.I)
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([SMHD]?)", re.I)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def parse_bytes(text: str) -> int:
    """``16M`` -> 16 MiB (``16MiB``, ``1.5G`` too); ``UsageError`` saying what is
    expected."""
    found = _BYTES.fullmatch(text.strip())
    if found is None:
        raise UsageError(f"{text!r} is not a size: write bytes, or a number with K, M or G")
    return int(float(found.group(1)) * _UNITS_BYTES[found.group(2).upper()])


def parse_seconds(text: str) -> float:
    """``7d`` -> 604800.0; ``UsageError`` saying what is expected."""
    found = _SECONDS.fullmatch(text.strip())
    if found is None:
        raise UsageError(
            f"{text!r} is not a duration: write seconds, or a number with s, m, h or d"
        )
    return float(found.group(1)) * _UNITS_SECONDS[found.group(2).upper()]


def _size(value: float) -> str:
    for unit in ("G", "M", "K"):
        if value >= _UNITS_BYTES[unit] and value % _UNITS_BYTES[unit] == 0:
            return f"{int(value) // _UNITS_BYTES[unit]}{unit}"
    return f"{int(value)}"


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: ``kind`` is int, seconds, bytes, choice, bool, path, text or names
    (collection names separated by commas)."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    flag_name: str = ""
    env_name: str = ""
    #: A ``create_app`` option (else one of ``offsync serve``'s own).
    app: bool = True
    #: Why the bounds are what they are, said when a value is out of them.
    why: str = ""

    @property
    def flag(self) -> str:
        return self.flag_name or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.env_name or "OFFSYNC_" + self.flag.removeprefix("--").replace("-", "_").upper()

    def _show(self, value: float) -> str:
        if self.kind == "bytes":
            return _size(value)
        if self.kind == "seconds":
            for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
                if value >= size and value % size == 0:
                    return f"{int(value // size)}{unit}"
            return f"{value:g}s"
        return f"{value:g}"

    def parse(self, text: str) -> Any:
        """The value ``text`` gives; ``UsageError`` saying what is wrong."""
        value: Any
        if self.kind == "int":
            try:
                value = int(text.strip())
            except ValueError:
                raise UsageError(f"{text!r} is not a whole number") from None
        elif self.kind == "bytes":
            value = parse_bytes(text)
        elif self.kind == "seconds":
            value = parse_seconds(text)
        elif self.kind == "bool":
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise UsageError(f"{text!r} is not yes or no (1/0, true/false, on/off)")
            return word in _TRUE
        elif self.kind == "choice":
            word = text.strip().lower()
            if word not in self.choices:
                raise UsageError(f"{text!r}: choose one of {', '.join(self.choices)}")
            return word
        elif self.kind == "names":
            names = [n.strip() for n in text.split(",") if n.strip()]
            for name in names:
                check_collection(name)
            return tuple(dict.fromkeys(names))
        else:  # path, text
            if not text.strip():
                raise UsageError("empty")
            return text
        return self.check(value)

    def check(self, value: Any) -> Any:
        """``value`` if it is within the bounds; else ``UsageError``."""
        why = f" ({self.why})" if self.why else ""
        if self.minimum is not None and value < self.minimum:
            raise UsageError(f"{self._show(value)} is below {self._show(self.minimum)}{why}")
        if self.maximum is not None and value > self.maximum:
            raise UsageError(f"{self._show(value)} is above {self._show(self.maximum)}{why}")
        return value


_BUNDLE_MAX = DEFAULT_LIMITS.max_bundle_bytes
#: An upload limit below this refuses bundles of one full segment (up to 256 KiB, never
#: cut) with their header.
MIN_UPLOAD_BYTES = 512 * 1024

#: ``create_app``'s options.
APP_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "max_in_flight",
        "int",
        8,
        "Uploads, applies and pulls at once (per worker); beyond, 503 with Retry-After.",
        minimum=1,
    ),
    Setting(
        "admission_wait",
        "seconds",
        5.0,
        "How long a request may wait for a free slot before 503.",
        minimum=0,
        maximum=600,
    ),
    Setting(
        "max_waiting",
        "int",
        256,
        "Requests waiting for a slot at once (per worker); beyond, 503 at once.",
        minimum=0,
    ),
    Setting(
        "busy_timeout",
        "seconds",
        10.0,
        "How long a request waits for the replica before 503.",
        minimum=0,
        maximum=600,
    ),
    Setting(
        "retry_after",
        "int",
        2,
        "The Retry-After seconds of a 503.",
        minimum=1,
        maximum=600,
        why="clients give up at once on a Retry-After over 600 s",
    ),
    Setting(
        "spool",
        "int",
        0,
        "Upload spool (PostgreSQL centres): hold each upload durably and answer 202, "
        "and apply up to this many bundles per transaction in the background; 0 "
        "applies each upload in its request (docs/scale.md).",
        minimum=0,
        maximum=4096,
    ),
    Setting(
        "max_upload_bytes",
        "bytes",
        None,
        "Largest bundle accepted [default: 64M, the replica's limit].",
        minimum=MIN_UPLOAD_BYTES,
        maximum=_BUNDLE_MAX,
        why="a bundle carries whole segments of up to 256K, and the replica refuses "
        f"bundles over {_size(_BUNDLE_MAX)}",
    ),
    Setting(
        "max_pull_bundle_bytes",
        "bytes",
        16 << 20,
        "Largest bundle in a pull answer.",
        minimum=1 << 20,
        maximum=_BUNDLE_MAX,
        why=f"pulls are packed in bundles of 1M at least, and sites refuse bundles over "
        f"{_size(_BUNDLE_MAX)}",
    ),
    Setting(
        "max_pull_response_bytes",
        "bytes",
        256 << 20,
        "One pull answer stops after this much and says 'more'.",
        minimum=1 << 20,
    ),
    Setting(
        "upload_dir",
        "path",
        None,
        "Where partial uploads wait, so they resume after a restart [default with "
        "`offsync serve`: the site's uploads/].",
    ),
    Setting(
        "max_partial_uploads",
        "int",
        1000,
        "Partial uploads kept; beyond, the one untouched longest gives way.",
        minimum=1,
    ),
    Setting(
        "partial_ttl",
        "seconds",
        7 * 86400.0,
        "A partial upload untouched this long is dropped.",
        minimum=60,
    ),
    Setting(
        "replay_window",
        "seconds",
        300.0,
        "How long a challenge stays good for one signed pull.",
        minimum=10,
        maximum=86400,
        flag_name="--challenge-lifetime",
    ),
    Setting(
        "readable",
        "choice",
        "auto",
        "Who may pull what: certified (only sites the trust store certifies now), "
        "everything (any key, every origin), or auto: certified in trust mode, "
        "everything in open mode.",
        choices=READABLE,
    ),
    Setting(
        "reference",
        "names",
        None,
        "Reference collections (comma-separated) every certified site reads whole, "
        "whatever its read scope [default: the site's, from site.json].",
    ),
    Setting(
        "metrics",
        "bool",
        False,
        "Serve Prometheus metrics at /metrics (needs the metrics extra).",
    ),
)

#: ``offsync serve``'s own.
SERVE_SETTINGS: tuple[Setting, ...] = (
    Setting("host", "text", "127.0.0.1", "Address to listen on.", app=False),
    Setting(
        "port",
        "int",
        8080,
        "Port to listen on; 0 picks a free one (printed on the first line).",
        minimum=0,
        maximum=65535,
        app=False,
    ),
    Setting(
        "workers",
        "int",
        1,
        "With --postgres: server processes sharing the database.",
        minimum=1,
        maximum=256,
        app=False,
    ),
    Setting(
        "log_format", "choice", "text", "Log lines as text or JSON.", choices=FORMATS, app=False
    ),
    Setting("log_level", "choice", "info", "Least level logged.", choices=LEVELS, app=False),
    Setting(
        "log_file",
        "path",
        None,
        "Append logs to this file (reopened when rotated) [default: stderr].",
        app=False,
    ),
    Setting(
        "access_log",
        "bool",
        False,
        "Log every HTTP request too (uvicorn's access log, in the same format).",
        app=False,
    ),
    Setting(
        "peer_every",
        "seconds",
        60.0,
        "With --peer: seconds between two rounds with each peer centre.",
        minimum=1,
        maximum=86400,
        app=False,
        why="a round per peer at most every second, at least once a day",
    ),
)

SETTINGS: tuple[Setting, ...] = APP_SETTINGS + SERVE_SETTINGS
_BY_NAME = {s.name: s for s in SETTINGS}


def from_env(env: Mapping[str, str], settings: tuple[Setting, ...] = SETTINGS) -> dict[str, Any]:
    """The settings given in ``env`` (only those), read and checked; ``UsageError``
    naming the variable and what is wrong."""
    out: dict[str, Any] = {}
    for setting in settings:
        text = env.get(setting.env)
        if text is None or text == "":
            continue
        try:
            out[setting.name] = setting.parse(text)
        except ValueError as exc:
            raise UsageError(f"{setting.env}: {exc}") from None
    return out


def app_options(replica: Replica, values: Mapping[str, Any]) -> dict[str, Any]:
    """``create_app`` keywords from setting values (defaults for those not given);
    ``UsageError`` for a ``readable`` policy the replica cannot follow."""
    options = {s.name: values.get(s.name, s.default) for s in APP_SETTINGS}
    options["readable"] = readers(replica, options["readable"], options["reference"])
    return options


def setting(name: str) -> Setting:
    return _BY_NAME[name]
