"""`python -m alr ...`: the same command line as `alr ...`."""

import sys

from .cli import main

sys.exit(main())
