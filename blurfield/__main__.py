import sys

from blurfield.cli import main

sys.exit(main())
