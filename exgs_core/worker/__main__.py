"""``python -m exgs_core.worker``: the render / restore / compress worker (see :mod:`.server`)."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
