"""`python -m streams.cli`: the `stocksync` command."""

import sys

from streams.cli.main import main

sys.exit(main())
