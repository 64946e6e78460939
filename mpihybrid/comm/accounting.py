"""Payload accounting: calls, bytes and seconds per collective kind and per phase label.

Always on, so it must cost well under a microsecond per call: one dict lookup and four adds.
"Sent" is what this rank hands to a collective, "received" what it gets back from others,
both in payload bytes of the application buffers (not wire bytes, which depend on the MPI's
algorithm). An allreduce of n bytes sends n and receives n on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Totals:
    calls: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    seconds: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.calls + other.calls,
            self.sent_bytes + other.sent_bytes,
            self.received_bytes + other.received_bytes,
            self.seconds + other.seconds,
        )

    def __sub__(self, other: Totals) -> Totals:
        return Totals(
            self.calls - other.calls,
            self.sent_bytes - other.sent_bytes,
            self.received_bytes - other.received_bytes,
            self.seconds - other.seconds,
        )


class CommStats:
    """Per-rank counters keyed by (phase, kind). Shared by a communicator and those split from it."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list] = {}
        self.phase = "main"

    def add(self, kind: str, sent: int, received: int, seconds: float) -> None:
        row = self._rows.get((self.phase, kind))
        if row is None:
            row = self._rows[(self.phase, kind)] = [0, 0, 0, 0.0]
        row[0] += 1
        row[1] += sent
        row[2] += received
        row[3] += seconds

    @contextmanager
    def label(self, phase: str) -> Iterator[None]:
        """Count the collectives inside the block under ``phase`` (e.g. "round", "lanczos")."""
        outer, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = outer

    def rows(self) -> dict[tuple[str, str], Totals]:
        return {key: Totals(*row) for key, row in self._rows.items()}

    def total(self, *, kind: str | None = None, phase: str | None = None) -> Totals:
        """Sum over the rows that match ``kind`` and ``phase`` (None matches all)."""
        out = Totals()
        for (p, k), row in self._rows.items():
            if (kind is None or k == kind) and (phase is None or p == phase):
                out = out + Totals(*row)
        return out

    def by_kind(self) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for (_, kind), row in self._rows.items():
            out[kind] = out.get(kind, Totals()) + Totals(*row)
        return out
