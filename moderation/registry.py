"""A versioned model registry on a filesystem: run directories plus a `current` pointer.

    <registry>/runs/<version>/   complete run directories (see moderation.runfiles)
    <registry>/current          the promoted version's name, one line
    <registry>/history.jsonl    every promotion: version, previous version, time, note

The pointer is replaced atomically (write a temporary file, then rename), so a reader — a serving replica
polling for a new model — sees either the old version or the new one, never half of a change.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from moderation import runfiles


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs = self.root / "runs"

    @property
    def pointer(self) -> Path:
        return self.root / "current"

    def current_version(self) -> str | None:
        try:
            return self.pointer.read_text().strip() or None
        except FileNotFoundError:
            return None

    def current_dir(self) -> Path | None:
        version = self.current_version()
        return self.runs / version if version else None

    def run_dir(self, version: str) -> Path:
        return self.runs / version

    def versions(self) -> list[str]:
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if self.runs.exists() else []

    def promote(self, version: str, note: str = "") -> Path:
        """Make `version` current. It must be a complete run directory inside the registry."""
        path = self.run_dir(version)
        runfiles.resolve_run_dir(path)  # raises, naming the missing file, for anything incomplete
        previous = self.current_version()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.pointer.with_name(f".current.{os.getpid()}.tmp")
        tmp.write_text(version + "\n")
        os.replace(tmp, self.pointer)
        with (self.root / "history.jsonl").open("a") as fh:
            fh.write(json.dumps({"version": version, "previous": previous, "note": note,
                                 "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
        return path

    def history(self) -> list[dict]:
        path = self.root / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
