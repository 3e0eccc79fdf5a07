"""Python's cycle collector, set for a process whose start-up makes what lives as long as the process.

The collector only ever frees reference cycles; everything else is freed by
reference counting, whatever is set here.  Three moments (figures: issue 16,
on this project's 2-core machine):

- ``starting``: off while modules, settings and schemas are made; all of it
  stays, so its passes would free nothing (9 ms of a one-event run);
- ``settled``: what start-up made leaves the collector's sight
  (``gc.freeze``), and it runs again with a young-generation threshold of
  7,000 objects instead of 700.  Intake makes a few short-lived containers
  per event, so the default threshold runs a pass every couple of hundred
  events: 0.5 us of CPU per event in bulk, measured;
- ``at_exit``: the interpreter's last collection at exit would walk every
  object left only to find nothing to free (13 ms of a one-event run).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 7_000


def starting() -> None:
    """Collect nothing until ``settled``."""
    gc.disable()


def settled() -> None:
    """Start-up is over: freeze what it made, collect again (at the threshold above)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.enable()


def at_exit() -> None:
    """The process is about to end: spare the interpreter's final pass over what is left."""
    gc.freeze()
