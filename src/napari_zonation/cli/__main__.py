"""``python -m napari_zonation.cli``: the ``napari-zonation`` command."""

import sys

from .command import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
