"""Per-rank log files: everything a rank prints also goes to DIR/rank-<r>.log."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TextIO


class Tee(io.TextIOBase):
    """A text stream that writes to several streams (the console and a log file)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return self.streams[0].isatty()


def tee_to_rank_log(directory: str | Path, rank: int) -> Path:
    """Send this rank's stdout and stderr to the console and to DIR/rank-<rank>.log (appended,
    so a resumed run continues its logs)."""
    path = Path(directory) / f"rank-{rank}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives as long as the process)
    sys.stdout = Tee(sys.stdout, log)
    sys.stderr = Tee(sys.stderr, log)
    return path
