"""``python -m gdlphys.cli``: the same as the ``gdlphys`` command."""

import sys

from gdlphys.cli import main

sys.exit(main())
