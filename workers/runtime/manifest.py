"""The files a supervisor and its shared host (``workers/runtime/host.py``) talk through.

``{id}.json`` per sentinel (written by the supervisor: spec, lease token, lease time) and
``host.state`` (written by the host after each pass over them). Both are replaced atomically
and private to the user: a spec may hold client secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "host.state"


def entry_path(directory: Path, sentinel_id: int) -> Path:
    return directory / f"{sentinel_id}.json"


def write_entry(directory: Path, sentinel_id: int, entry: dict[str, Any]) -> None:
    write_atomically(entry_path(directory, sentinel_id), json.dumps(entry, sort_keys=True))


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it; private (0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_state(directory: Path) -> dict | None:
    """The host's last ``host.state`` (``synced_at``: wall-clock start of its last pass over
    the manifest; ``running``: id -> lease token of each sentinel alive), None before any."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((directory / STATE_FILE).read_text())
    return None


def read_manifest(directory: Path) -> dict[int, dict]:
    """The sentinels the supervisor wants run here: id -> entry (a file half written by the
    supervisor is never read: it renames complete files into place)."""
    wanted = {}
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            wanted[int(path.stem)] = json.loads(path.read_text())
    return wanted
