"""Where accepted events wait for delivery: the agent's durable spool (and pipe mode's memory queue)."""
