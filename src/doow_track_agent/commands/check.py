"""``doow-track check``: validate a config file and/or an events file without sending anything."""

from __future__ import annotations

import argparse
import json
import os
import sys

from doow_track_agent import config
from doow_track_agent.egress import describe_trust
from doow_track_agent.exits import EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_OK
from doow_track_agent.modes.pipe.check import check_events
from doow_track_agent.sources import file_tail

EPILOG = """\
examples:
  doow-track check --config ./doow-track.json
  doow-track check --events usage.ndjson --json
  doow-track check --config /etc/doow-track/doow-track.json --events today.ndjson

The route (direct or which proxy, and why) and the trust store deliveries would
use are resolved with this shell's environment (HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE ...).
exit status: 0 valid, 65 some events invalid, 66 events file unreadable, 78 config invalid.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="validate a config file and/or an events file",
                                   description="Validate a config file against the config schema (naming "
                                               "every bad key) and/or an events file line by line with "
                                               "the same rules as pipe mode. Nothing is sent.",
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", metavar="FILE", help="config file (default: $DOOW_TRACK_CONFIG or "
                                                         f"{config.DEFAULT_CONFIG_PATH} when no --events)")
    parser.add_argument("--events", metavar="FILE", help="NDJSON events file to validate")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def check_config(path: str) -> dict:
    """Validate one config file: errors name their key; warnings say what to fix."""
    result: dict = {"config": path, "errors": [], "warnings": []}
    try:
        data, warnings = config.read_file(path)
    except config.ConfigError as error:
        result["errors"] = [{"key": key, "message": message} for key, message in error.problems]
        return result
    result["warnings"] = [{"key": "apiKey", "message": text} for text in warnings]
    try:
        settings = config.load(path, os.environ)
    except config.ConfigError as error:  # the file is valid, the environment is not (e.g. HTTPS_PROXY)
        result["errors"] = [{"key": key, "message": message} for key, message in error.problems]
        return result
    result["warnings"] += [{"key": "input.path", "message": text} for text in file_tail.shared_directories(settings)]
    result["route"] = settings.route.as_json()
    result["route_text"] = settings.route.describe()
    result["trust"] = describe_trust(settings.tls, os.environ)
    if "apiKey" not in data and not os.environ.get("DOOW_TRACK_API_KEY"):
        result["warnings"].append({"key": "apiKey", "message": "no key in the file and DOOW_TRACK_API_KEY "
                                                               "is not set: pipe mode and the agent need one"})
    return result


def run(args: argparse.Namespace) -> int:
    path = args.config or (None if args.events else config.default_config_path(os.environ))
    result: dict = {"ok": True}
    code = EX_OK
    if path:
        result.update(check_config(path))
        if result["errors"]:
            code = EX_CONFIG
    if args.events:
        events = check_events(args.events)
        result["events"] = events
        if events is None:
            code = max(code, EX_NOINPUT)
        elif events["invalid"]:
            code = max(code, EX_DATAERR)
    result["ok"] = code == EX_OK
    print_result(result, args.json)
    return code


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    if "config" in result:
        verdict = "invalid" if result["errors"] else "valid"
        print(f"{result['config']}: {verdict}")
        for item in result["errors"]:
            print(f"  error: {item['key']}: {item['message']}")
        if "route" in result:
            print(f"  route: {result['route_text']}")
            print(f"  trust: {result['trust']}")
        for item in result["warnings"]:
            print(f"  warning: {item['key']}: {item['message']}")
    events = result.get("events")
    if events:
        print(f"events: {events['lines_read']} lines, {events['valid']} valid, {events['invalid']} invalid")
        for item in events["errors"]:
            print(f"  line {item['line']}: {item['path']}: {item['message']}")
