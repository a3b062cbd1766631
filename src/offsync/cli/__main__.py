"""``python -m offsync.cli``: the ``offsync`` command without its script."""

from . import main

if __name__ == "__main__":  # not when a spawned worker process re-imports this module
    main()
