"""`python -m beliefscope.cli`: the `beliefscope` command (the demo starts its trainer so)."""

import sys

from beliefscope.cli import main

sys.exit(main())
