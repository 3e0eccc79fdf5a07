"""``doow-track schema``: print the JSON Schema events (or the config) are validated against."""

from __future__ import annotations

import argparse
import sys

from doow_track_agent.exits import EX_OK
from doow_track_agent.intake.validation import schema_text

EPILOG = """\
examples:
  doow-track schema                 # the event schema (draft 2020-12)
  doow-track schema --config        # the config file schema
  doow-track schema > event.schema.json && check-jsonschema --schemafile event.schema.json ...
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="print the event (or config) JSON Schema",
                                   description="Print the JSON Schema shipped in the package: the one "
                                               "source of truth for what doow-track accepts.",
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="store_true", help="print the config file schema instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text("config" if args.config else "event"))
    return EX_OK
