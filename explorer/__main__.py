"""`python -m explorer` is the `explorer` command."""

from explorer.commands import main

raise SystemExit(main())
