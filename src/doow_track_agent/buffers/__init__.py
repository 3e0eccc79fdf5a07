"""Where accepted events wait for delivery: the agent's durable ``spool``, pipe mode's ``memory`` queue."""
