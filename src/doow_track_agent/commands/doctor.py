"""``doow-track doctor``: tell in seconds why events do not arrive, one line per check."""

from __future__ import annotations

import argparse
import os
import sys

from doow_track_agent.cli import options
from doow_track_agent.doctor import report, runner
from doow_track_agent.doctor.subject import gather
from doow_track_agent.redact import scrub

EPILOG = """\
checks (in this order; one that does not apply is skipped, never failed):
  config.*       file found and readable, valid against the schema, key not readable by others
  key.*          present, dk_ format, accepted by the endpoint (an authenticated read)
  endpoint.*     DNS, TCP, TLS certificate and expiry, HTTP, round trip, clock skew (Date header)
  license.ID     each --license, and each license_id in the first 1000 lines of --events, exists
  events.file    --events validated line by line as pipe mode would (a dry run)
  agent.*        running, ready (/readyz), spool depth and age, dead letters, last delivery error
  environment.*  keys differ from --other-config's, the agent's log goes somewhere collected

examples:
  doow-track doctor                                    # $DOOW_TRACK_CONFIG or /etc/doow-track/doow-track.json
  doow-track doctor --config ./doow-track.json --license lic_abc123
  doow-track doctor --api-key-file ~/.doow-key --events usage.ndjson
  doow-track doctor --endpoint http://127.0.0.1:8080 --json | jq '.checks[] | select(.status == "fail")'
  doow-track doctor --config prod.json --other-config staging.json

exit status: 0 no check failed (warnings allowed), 1 at least one check failed, 64 usage.
The key is never printed: it shows as dk_…abcd.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="diagnose why events do not arrive", epilog=EPILOG,
        description="Check the config, the key, the endpoint, licenses, an events file and the agent, "
                    "printing one line per check (ok, warn, fail, skip) with what to do about it.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_locating_options(parser)
    parser.add_argument("-k", "--api-key", metavar="dk_...", help="the key to check (visible in ps: prefer "
                                                             "DOOW_TRACK_API_KEY or --api-key-file)")
    parser.add_argument("--api-key-file", metavar="FILE", help="read the key from the first line of FILE")
    parser.add_argument("--endpoint", metavar="URL", help="the API base URL to check (overrides the config)")
    parser.add_argument("--license", action="append", metavar="lic_...",
                        help="a license id that must exist for this key (repeatable)")
    parser.add_argument("--events", metavar="FILE", help="an NDJSON events file to validate and take license ids from")
    parser.add_argument("--other-config", action="append", metavar="FILE",
                        help="another environment's config whose key must differ (repeatable)")
    parser.add_argument("--timeout", type=options.seconds, default=3.0, metavar="SECONDS",
                        help="per network check (default %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    subject = gather(args, os.environ)
    checks = runner.run(subject)
    text = report.as_json(checks, runner.facts(subject)) if args.json else report.as_text(checks)
    # Every detail is built from masked values; scrubbing again guards against a key quoted back by a server.
    sys.stdout.write(scrub(text, subject.key) + "\n")
    return report.exit_code(checks)
