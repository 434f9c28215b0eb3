"""``python -m connexi_async``: the same as the ``connexi-async`` command."""

import sys

from .cli import main

sys.exit(main())
