"""`python -m engagement_cli COMMAND ...`: the `engagement` command without its installed script."""

import sys

from engagement_cli.cli import main

sys.exit(main())
