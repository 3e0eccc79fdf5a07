"""Where raw lines come from: stdin, the agent's socket, TCP, tailed files."""
