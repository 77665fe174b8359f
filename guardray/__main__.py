"""``python -m guardray`` runs the command line."""

import sys

from guardray.cli import main

sys.exit(main())
