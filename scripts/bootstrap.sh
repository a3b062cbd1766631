#!/usr/bin/env bash
# Sourced by scripts/demo and scripts/test. `ensure_env DIR EXTRAS WHAT` makes the virtual
# environment DIR (in the checkout) holding this checkout's offsync, editable, with EXTRAS:
# on first use, and again whenever pyproject.toml, this file or EXTRAS change. Each step
# says what it does, one line on stderr; an environment already up to date prints nothing.
# The demo and the tests get environments of their own, so that running the demo does not
# install the test, docs and fuzz tools (mypy, Django, atheris...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BOOTSTRAP="$ROOT/scripts/bootstrap.sh"

say() { echo "${0##*/}: $*" >&2; }

ensure_env() {
    local name="$1" extras="$2" what="$3"
    local venv="$ROOT/$name" stamp="$ROOT/$name/.offsync-installed"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$extras" ] \
        && [ ! "$ROOT/pyproject.toml" -nt "$stamp" ] && [ ! "$BOOTSTRAP" -nt "$stamp" ]; then
        return 0
    fi
    local started=$SECONDS
    if [ ! -x "$venv/bin/python" ]; then
        local py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
        if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            say "offsync needs Python 3.11 or newer; $py is older (set PYTHON=/path/to/python3.11)"
            return 1
        fi
        say "creating $what in $name/ (first run only)..."
        "$py" -m venv "$venv"
    elif [ -f "$stamp" ]; then
        say "pyproject.toml or the bootstrap changed: updating $what in $name/..."
    fi
    say "installing offsync[$extras] into $name/..."
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
    echo "$extras" >"$stamp"
    say "$what is ready ($((SECONDS - started)) s)."
}
