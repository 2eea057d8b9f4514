"""``python -m bnlib.bench``: see ``bnlib.bench``."""

import sys

from bnlib.bench import main

sys.exit(main())
