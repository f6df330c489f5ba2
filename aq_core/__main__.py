"""``python -m aq_core`` runs the aq command line."""

from aq_core.cli import main

raise SystemExit(main())
