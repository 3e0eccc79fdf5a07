"""Where raw lines come from, in agent mode: the Unix socket, loopback TCP, tailed files.

``unix_socket`` and ``tcp`` listen and hand each connection to ``producers``
(the NDJSON request/reply protocol); ``file_tail`` follows files and keeps
checkpoints; ``lines`` splits bytes into numbered lines for every source,
pipe mode's stdin included; ``pacing`` slows producers down when deliveries
fall behind.
"""

from __future__ import annotations

STREAM_LIMIT = 1024 * 1024  # bytes asyncio buffers per connection before a line must end


class SourceError(Exception):
    """A source cannot listen (address in use, bad path or permissions, missing token)."""
