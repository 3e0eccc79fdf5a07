"""The README's Development section shows the runtime's tree as it is.

It names every top-level folder and module, and every module of the folders
that make up the data flow and the modes (commands/, doctor/ and receiver/
are described by their folder: one module per command, per check group).
"""

from __future__ import annotations

import os
import re

import doow_track_agent

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.dirname(doow_track_agent.__file__)


def _section() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    start = text.index("## Development")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


DESCRIBED_BY_FOLDER = {"commands", "doctor", "receiver", "schemas"}


def test_every_runtime_folder_and_module_is_named():
    words = set(re.findall(r"[a-z_]+", _section()))
    missing = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [name for name in dirs if not name.startswith("__")]
        if os.path.relpath(folder, PACKAGE).split(os.sep)[0] in DESCRIBED_BY_FOLDER:
            continue
        for name in dirs + [name[:-3] for name in files if name.endswith(".py") and not name.startswith("__")]:
            if name not in words:
                missing.append(os.path.relpath(os.path.join(folder, name), PACKAGE))
    assert missing == []
