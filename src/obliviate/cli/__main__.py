"""``python -m obliviate.cli``: the same program as the ``obliviate`` script."""

import sys

from . import entry

sys.exit(entry())
