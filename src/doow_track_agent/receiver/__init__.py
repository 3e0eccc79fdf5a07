"""The local receiver: Doow's ingest protocol on loopback, events kept in SQLite.

Used by the demo, the test suites and benchmarks, and by users who want to
see in CI what the agent would deliver. Start it with `doow-track receiver`
or, in Python, ``Receiver(db_path).start()``.
"""

from doow_track_agent.receiver.faults import Faults
from doow_track_agent.receiver.server import Receiver
from doow_track_agent.receiver.store import Store

__all__ = ["Faults", "Receiver", "Store"]
