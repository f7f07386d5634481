"""``python -m tlsk``: the same as the ``tlsk`` command."""

import sys

from tlsk.cli import main

if __name__ == "__main__":
    sys.exit(main())
