"""Allow ``python -m doow_track_agent``."""

from doow_track_agent.cli import main

raise SystemExit(main())
