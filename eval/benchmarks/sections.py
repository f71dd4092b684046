"""BENCHMARKS.md bookkeeping: every benchmark writes its own section, with the command that produced it, the
machine (cores, CPU model, GPU if any) and the date, replacing that section's previous figures."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:  # nvidia-smi rather than torch: eval stays free of torch
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        gpu = names.replace("\n", ", ") or gpu
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{os.cpu_count()} cores, {cpu}, {gpu}, Python {platform.python_version()}"


def command_line() -> str:
    """The command as a user types it: `moderation ...` whether it ran as the script or as
    `python -m moderation.cli` (whose argv[0] is the package's __main__.py)."""
    program = sys.argv[0]
    as_cli = program.endswith("moderation") or Path(program).parts[-3:] == ("moderation", "cli", "__main__.py")
    argv = ["moderation" if as_cli else program, *sys.argv[1:]]
    return " ".join(shlex.quote(a) for a in argv)


def check_markers(text: str, name: str, path: Path = BENCHMARKS) -> None:
    """Refuse to write section `name` unless its markers are one opener followed by one closer (or absent).

    A stray marker (from a hand merge) would make the replacement swallow whatever lies between it and the next
    one, other sections' tables included; better to stop and name the lines."""
    def lines(marker: str) -> list[int]:
        return [text.count("\n", 0, m.start()) + 1 for m in re.finditer(re.escape(marker), text)]

    opens, closes = lines(f"<!-- bench:{name} -->"), lines(f"<!-- /bench:{name} -->")
    if (len(opens), len(closes)) not in ((0, 0), (1, 1)) or (opens and opens[0] > closes[0]):
        raise ValueError(f"{path}: section {name!r} has its opening marker on line(s) {opens or 'none'} and its "
                         f"closing marker on line(s) {closes or 'none'}; mend the markers by hand first")


def update_section(name: str, title: str, body: str, command: str | None = None, path: Path = BENCHMARKS) -> Path:
    """Replace (or append) the section between `<!-- bench:name -->` markers in BENCHMARKS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"<!-- bench:{name} -->\n## {title}\n\n"
             f"- Command: `{command or command_line()}`\n- Machine: {machine()}\n- Date: {stamp}\n\n"
             f"{body.strip()}\n<!-- /bench:{name} -->")
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEvery figure below was written by the command shown with it.\n"
    check_markers(text, name, path)
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
