"""Reference tables generated from what the code ships: the JSON Schemas and the exit-status table.

The schemas decide what is valid and ``exits`` what each status means; a
hand-written reference would drift from them.  ``docs/guide.md`` (config and
event references) and ``docs/cli-contract.md`` (exit statuses) hold the
generated tables between marker comments, and a test fails when they differ
from what this module produces now:

    python -m doow_track_agent.docgen docs/guide.md           # rewrite the generated sections
    python -m doow_track_agent.docgen --check docs/guide.md   # exit 1 when they are stale
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from doow_track_agent import exits
from doow_track_agent.config import ENV_NAMES, FLAG_NAMES
from doow_track_agent.intake.validation import load_schema
from doow_track_agent.secure_files import open_replacing

BEGIN = "<!-- BEGIN GENERATED {name} (python -m doow_track_agent.docgen {document}) -->"
END = "<!-- END GENERATED {name} -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _resolve(spec: dict, schema: dict) -> dict:
    """Inline a ``$ref`` to ``$defs``, keeping the referring spec's own annotations on top."""
    if "$ref" not in spec:
        return spec
    target = schema["$defs"][spec["$ref"].rsplit("/", 1)[1]]
    return {**target, **{k: v for k, v in spec.items() if k != "$ref"}}


def _type(spec: dict, ref: Optional[str]) -> str:
    """A reader's name for the accepted values: enums listed, references named, ranges shown."""
    if "enum" in spec:
        return " | ".join(_code(value) for value in spec["enum"])
    kinds = spec.get("type", "any")
    text = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if "format" in spec:
        text += f" ({spec['format']})"
    if ref == "milliseconds":
        text = "integer (ms)"
    elif ref == "listen":
        text = "`HOST:PORT` or null"
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum")
    if low is not None or high is not None:
        low_text = f"> {low}" if "exclusiveMinimum" in spec else f"≥ {low}"
        text += f", {low_text}" if high is None else f", {low}–{high}"
    if "maxLength" in spec:
        text += f", {spec.get('minLength', 0)}–{spec['maxLength']} chars"
    elif spec.get("minLength") == 1:
        text += ", non-empty"
    elif "minLength" in spec:
        text += f", at least {spec['minLength']} chars"
    return text


def _settable(path: str) -> str:
    """The environment variable and flag that set the same key (config.load's layers)."""
    names = [f"`{name}`" for name in (*ENV_NAMES.get(path, ()), FLAG_NAMES.get(path)) if name]
    return ", ".join(names) or "—"


def _config_rows(properties: Dict[str, dict], schema: dict, prefix: str) -> Iterator[List[str]]:
    for key, raw in properties.items():
        ref = raw["$ref"].rsplit("/", 1)[1] if "$ref" in raw else None
        spec = _resolve(raw, schema)
        name = f"{prefix}{key}"
        default = _code(spec["default"]) if "default" in spec else "—"
        yield [f"`{name}`", _type(spec, ref), default, _settable(f"$.{name}"), spec.get("description", "")]
        if "properties" in spec:
            yield from _config_rows(spec["properties"], schema, f"{name}.")


def config_reference() -> str:
    schema = load_schema("config")
    rows = list(_config_rows(schema["properties"], schema, ""))
    return _table(["key", "type", "default", "also set by", "meaning"], rows, schema["description"])


def event_reference() -> str:
    schema = load_schema("event")
    required = set(schema["required"])
    rows = [[f"`{field}`", "yes" if field in required else "no", _type(spec, None), spec.get("description", "")]
            for field, spec in schema["properties"].items()]
    return _table(["field", "required", "type", "meaning"], rows, schema["description"])


def exit_statuses() -> str:
    names = {value: name for name, value in vars(exits).items() if name.startswith("EX_")}
    rows = [[str(code), f"`{names[code]}`", meaning] for code, meaning in sorted(exits.MEANINGS.items())]
    return _table(["code", "name", "meaning"], rows,
                  "Every command draws its status from one table (`exits.py`, names as in sysexits.h).")


def _table(header: Sequence[str], rows: List[List[str]], intro: str) -> str:
    lines = [intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# name -> (the document holding it, its generator)
SECTIONS: Dict[str, Tuple[str, Callable[[], str]]] = {
    "config-reference": ("docs/guide.md", config_reference),
    "event-format": ("docs/guide.md", event_reference),
    "exit-statuses": ("docs/cli-contract.md", exit_statuses),
}


def render(text: str, document: str) -> str:
    """``text`` (the file ``document``) with each of its generated sections replaced by what the code says now.

    Raises ValueError when a section ``SECTIONS`` places in ``document`` has lost its markers.
    """
    for name, (home, generate) in SECTIONS.items():
        if home != document:
            continue
        begin, end = BEGIN.format(name=name, document=home), END.format(name=name)
        found = re.search(re.escape(begin) + r"\n.*?" + re.escape(end), text, re.DOTALL)
        if not found:
            raise ValueError(f"no generated section {name!r} (a {begin!r} ... {end!r} pair)")
        text = f"{text[:found.start()]}{begin}\n{generate()}\n{end}{text[found.end():]}"
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m doow_track_agent.docgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="the Markdown file holding the generated sections")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the file is stale")
    args = parser.parse_args(argv)
    with open(args.path, encoding="utf-8") as handle:
        text = handle.read()
    fresh = render(text, os.path.relpath(args.path).replace(os.sep, "/"))
    if args.check:
        if fresh != text:
            sys.stderr.write(f"{args.path}: generated sections are stale; run: {parser.prog} {args.path}\n")
        return int(fresh != text)
    if fresh != text:
        with open_replacing(args.path, "the documentation file", 0o644) as handle:
            handle.write(fresh.encode("utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
