"""``python -m demo``: see :mod:`demo.pipeline`."""

import sys

from demo.pipeline import main

sys.exit(main())
