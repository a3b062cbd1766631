"""Where the time went, by stage: sums py-spy's raw (collapsed) stacks into buckets.

    py-spy record -r 250 -f raw -o /tmp/apply.txt -- python benchmarks/throughput.py ...
    python benchmarks/stacks.py /tmp/apply.txt [--only FUNCTION] [--top 15]

Each sample is put in the bucket of the deepest frame of its stack that matches a rule
below (so "psycopg" under "the store" counts as waiting on the database, and the
signature check under "open_bundle" as the signature check). ``--only`` keeps the samples
whose stack passes through a function of that name (e.g. ``Replica.apply``), so the
shares are of that call's time. ``--busy`` drops the samples of threads that wait
(thread pools, selectors, locks, psycopg waiting for the server): what is left is CPU. ``--top`` also lists the functions with the most samples
at the top of the stack (self time). Samples on CPU only, unless py-spy ran with
``--idle`` (then waiting shows too).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: (bucket, pattern over "function (file:line)"), tried from the leaf up; first hit wins.
RULES: list[tuple[str, str]] = [
    ("signature (ed25519)", r"nacl/|^verify_signature |^sign .*identity\.py"),
    ("hash (blake2b)", r"^hash32 |hashlib"),
    ("zstd compress", r"^compress .*compression\.py"),
    ("zstd decompress", r"^decompress .*compression\.py|zstandard"),
    ("canonical field encoding", r"^(canonical_fields|_canonical) "),
    ("change row (outbox) encode/decode", r"^(Change\.)?(to_row|from_row) "),
    (
        "columns encode (seal)",
        r"^(encode_content|encode_block|_column|_columns|_uniform_columns|_group_columns|_walk"
        r"|_shape_wire|_encode_skeleton|_front_coded|_plainly_sealable) ",
    ),
    ("decode_fields (field bytes back to a dict)", r"^decode_fields "),
    ("columns decode (apply)", r"unpack\.py|change\.py|^unpack_strict "),
    ("segment/bundle framing", r"segment\.py|bundle\.py"),
    ("segment index, knowledge, receipt", r"segindex\.py|knowledge\.py|receipt\.py"),
    ("merge policy", r"policies\.py"),
    ("sqlite3 (SQL, b-tree, I/O)", r"stores/sqlite\.py"),
    ("store rows built in Python (stores/base.py)", r"stores/base\.py"),
    ("PostgreSQL (psycopg: send, wait, receive)", r"psycopg"),
    ("the PostgreSQL store (Python)", r"stores/postgres\.py"),
    ("HTTP (uvicorn, starlette, h11, anyio)", r"uvicorn|starlette|h11|anyio|asyncio|httptools"),
    ("replica logic", r"replica\.py|clock\.py|trust\.py"),
    ("msgpack", r"msgpack|encoding\.py"),
]


#: Leaf frames of a thread that waits (with ``--busy``, such samples are dropped):
#: thread pools, event-loop selectors, locks, pipes, and psycopg waiting for the server.
WAITING = re.compile(
    r"^(Condition\.wait|\w*Selector\.select|Connection\._recv|main \(.*resource_tracker"
    r"|ServerState\.run_locked \(.*state\.py:112|Connection\.wait \(.*psycopg"
    r"|Event\.wait|Thread\.join|_wait_for_tstate_lock|sleep)"
)


def bucket(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in RULES:
            if re.search(pattern, frame):
                return name
    return "other (benchmark, interpreter)"


def cpu_by_module(fn: Callable[[], Any], top: int = 25) -> list[str]:
    """Run ``fn`` under cProfile timed by CPU (``time.process_time``: waiting on a socket
    or a disk costs nothing) and return lines of self time by module, largest first.
    cProfile's own cost inflates the functions called most often; read the shares."""
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(fn)
    by_module: Counter[str] = Counter()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, tottime, _, _) in stats.items():
        if filename == "~":  # a C function: name it by what it is
            module = "C: " + re.sub(r"^<(built-in method|method) |>$", "", name)
        else:
            parts = Path(filename).parts
            keep = ("offsync", "psycopg", "nacl", "msgpack", "zstandard", "sqlite3")
            hits = [i for i, p in enumerate(parts) if p in keep]
            module = "/".join(parts[hits[-1] :]) if hits else Path(filename).name
        by_module[module] += tottime
    total = sum(by_module.values())
    lines = [f"CPU self time by module ({total:.2f} s under cProfile):"]
    for module, secs in by_module.most_common(top):
        lines.append(f"  {100 * secs / total:5.1f}%  {module}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", type=Path, help="py-spy record -f raw output")
    ap.add_argument("--only", help="keep stacks through a function of this name")
    ap.add_argument("--busy", action="store_true", help="drop samples of waiting threads")
    ap.add_argument("--top", type=int, default=0, help="also list the top self-time frames")
    args = ap.parse_args(argv)
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in args.raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        stack = stack_text.split(";")
        if args.only and not any(f.split(" (")[0] == args.only for f in stack):
            continue
        if args.busy and WAITING.search(stack[-1]):
            continue
        count = int(count_text)
        total += count
        buckets[bucket(stack)] += count
        leaves[stack[-1]] += count
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples{f' through {args.only}()' if args.only else ''}")
    for name, count in buckets.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    if args.top:
        print("top frames (self):")
        for frame, count in leaves.most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {frame[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
