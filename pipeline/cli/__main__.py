"""`python -m pipeline.cli ...` is `omnisift ...`."""

import sys

from pipeline.cli import main

sys.exit(main())
