"""Measuring what decoding untrusted input allocates: a fresh interpreter per case, its
peak resident memory (Linux ``/proc``) before and after. Shared by the format-2 and
format-3 decode-memory tests (tests/hostile)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

MiB = 1 << 20
#: Growth allowed besides what each case states: allocator and interpreter noise.
SLACK = 16 * MiB
BUDGET = 64 * MiB  # the default of Limits.max_decode_bytes


def peak_growth(tmp_path: Path, data: bytes, setup: str, run: str) -> tuple[int, str]:
    """Run ``run`` on ``data`` in a new interpreter; return (peak RSS growth in bytes,
    the error it raised or "ok"). ``setup`` runs before the baseline.

    The peak is the kernel's high-water mark of the child's resident memory
    (``VmHWM``), reset to the current size just before ``run`` (``clear_refs``), so
    nothing before the decode, the child's start included, counts. (``ru_maxrss`` of a
    child keeps the size of the forked parent, so it cannot be used here.)
    """
    source = tmp_path / "input.bin"
    source.write_bytes(data)
    script = textwrap.dedent(
        """
        import gc, json, sys
        from pathlib import Path

        def status(name):
            for line in open("/proc/self/status"):
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024

        data = Path(sys.argv[1]).read_bytes()
        {setup}
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the high-water mark starts again from here
        before = status("VmRSS")
        try:
        {run}
            outcome = "ok"
        except Exception as exc:
            import offsync
            if not isinstance(exc, offsync.OffsyncError):
                raise
            outcome = type(exc).__name__ + ": " + str(exc)[:120]
        print(json.dumps({{"growth": status("VmHWM") - before, "outcome": outcome}}))
        """
    ).format(setup=setup.strip(), run=textwrap.indent(run, "    ").rstrip())
    done = subprocess.run(
        [sys.executable, "-c", script, str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["growth"], result["outcome"]


def array_of(n: int, item: bytes) -> bytes:
    return b"\xdd" + n.to_bytes(4, "big") + item * n
