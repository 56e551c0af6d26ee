"""Where exported data is written while an access request runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def export_folder(exports: Path, reference: str) -> Path:
    """Where a request's exported data lives: one folder per request under `exports`."""
    return exports / reference


class DirectorySink:
    """Writes each document as a JSON file under one folder; a crash leaves no half file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, document: Any) -> None:
        target = (self.root / name).resolve()
        if self.root.resolve() not in target.parents:
            raise ValueError(f"export file name escapes the export folder: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".partial")
        with partial.open("w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=1, sort_keys=True)
        os.replace(partial, target)
