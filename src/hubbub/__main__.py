"""`python -m hubbub` runs the command line."""

from hubbub.cli import main

raise SystemExit(main())
