"""`python -m hubbub` runs the command line."""

from hubbub.ops.cli import main

raise SystemExit(main())
