"""One module per `doow-track` command; see cli.COMMANDS."""
