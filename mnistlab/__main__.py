"""``python -m mnistlab``: the ``mnistlab`` command."""

import sys

from .cli import main

sys.exit(main())
