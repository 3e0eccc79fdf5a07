"""Agent mode: sources -> intake -> spool -> delivery in one long-lived process, and its daemon plumbing.

``run`` starts, reloads and stops the agent; ``health`` serves ``/status`` and
``/metrics``; ``pidfile``, ``systemd`` and ``logs`` are what a daemon owes its
host (one instance, readiness and watchdog, logs that go somewhere).
"""
