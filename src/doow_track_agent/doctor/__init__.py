"""``doow-track doctor``: Doow's "confirm the event arrived", production checklist and troubleshooting, as checks.

Doow's docs give operators lists to work through by hand when events do not
arrive.  Each module here turns one group of those questions into checks
(``config``, ``key``, ``endpoint``, ``licenses``, ``events``, ``agent``,
``environment``) that judge the facts ``subject`` gathered once; ``runner``
runs the groups in order and ``report`` prints the result.
"""
