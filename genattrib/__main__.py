"""``python -m genattrib ...``: the same as the ``genattrib`` command."""

import sys

from genattrib.cli import main

if __name__ == "__main__":
    sys.exit(main())
