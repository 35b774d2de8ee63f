"""``python -m classify_ops``: see ``classify_ops.cli``."""

from __future__ import annotations

import sys

from classify_ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
