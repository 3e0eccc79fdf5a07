"""Pipe mode: NDJSON on stdin -> intake -> memory queue -> delivery; undelivered events to the outbox."""
