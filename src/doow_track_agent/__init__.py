"""doow-track: deliver usage events to Doow from pipes, local producers and fleets."""

__version__ = "0.1.0"
