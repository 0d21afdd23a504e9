"""``python -m sw.cli ARGS`` runs ``dorefa ARGS``."""

import sys

from . import main

sys.exit(main())
