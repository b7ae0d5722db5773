"""``python -m robench`` = the ``robench`` command."""

import sys

from robench.cli import main

sys.exit(main())
