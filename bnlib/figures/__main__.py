"""``python -m bnlib.figures``: see ``bnlib.figures``."""

import sys

from bnlib.figures import main

sys.exit(main())
