"""`python -m cardledger`: the `cardledger` command."""

import sys

from .cli import main

sys.exit(main())
