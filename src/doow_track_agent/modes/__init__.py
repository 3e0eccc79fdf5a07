"""The two ways doow-track runs: ``pipe`` (stdin to the API, leftovers to an outbox) and ``agent`` (a daemon)."""
