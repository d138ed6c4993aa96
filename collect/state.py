"""A collector's progress in a small JSON file, replaced atomically (write aside, fsync, rename)."""

import json
import os
from pathlib import Path
from typing import Any

from chargeback.errors import UsageError

VERSION = 1


def load(path: Path, kind: str) -> dict[str, Any]:
    """The saved state of collector `kind`, or an empty one when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise UsageError(f"state file {path} cannot be read: {error.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise UsageError(f"state file {path} is not JSON; move it aside to start over") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("kind") != kind:
        raise UsageError(
            f"state file {path} is not a version {VERSION} {kind} state; use another --state"
        )
    state = doc.get("state")
    return state if isinstance(state, dict) else {}


def save(path: Path, kind: str, state: dict[str, Any]) -> None:
    """Replace the file in one step: a crash leaves either the old or the new state, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps({"version": VERSION, "kind": kind, "state": state}, indent=1, sort_keys=True)
    with aside.open("w", encoding="utf-8") as handle:
        handle.write(data + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(aside, path)
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open a directory
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
