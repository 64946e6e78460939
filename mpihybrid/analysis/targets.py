"""`--target METRIC>=VALUE`: when, at which step and after how many uplink bytes a run got there."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpihybrid.analysis.runs import RunRecord
from mpihybrid.errors import UsageError


@dataclass(frozen=True)
class Target:
    metric: str
    op: str  # ">=" or "<="
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class Reached:
    """The first row meeting the target: wall time, cumulative uplink bytes (rank 0), step."""

    seconds: float
    uplink_bytes: float
    step: int


def parse_target(text: str) -> Target:
    """'test_accuracy>=0.9', 'train_loss<=0.05', or 'NAME=V' (>= for accuracies, <= otherwise)."""
    for op in (">=", "<="):
        if op in text:
            name, value = text.split(op, 1)
            break
    else:
        if "=" not in text:
            raise UsageError(f"--target '{text}': expected NAME>=VALUE, NAME<=VALUE or NAME=VALUE")
        name, value = text.split("=", 1)
        op = ">=" if "accuracy" in name else "<="
    try:
        return Target(name.strip(), op, float(value))
    except ValueError:
        raise UsageError(f"--target '{text}': '{value.strip()}' is not a number") from None


def reach(run: RunRecord, target: Target) -> Reached | None:
    """Where ``run`` first meets ``target``, or None if it never does (or lacks the metric)."""
    y = run.metrics.get(target.metric)
    if y is None:
        return None
    met = (y >= target.value) if target.op == ">=" else (y <= target.value)
    hit = np.flatnonzero(~np.isnan(y) & met)
    if not len(hit):
        return None
    i = int(hit[0])
    up = run.metrics.get("uplink_bytes")
    sent = float(np.nansum(up[: i + 1])) if up is not None else math.nan
    return Reached(float(run.metrics["wall_time"][i]), sent, int(run.metrics["step"][i]))


def seconds_to(run: RunRecord, target: Target | None) -> float | None:
    """What a speed-up compares: the time to the target, or without one the run's wall time."""
    if target is None:
        seconds = float(run.metrics["wall_time"][-1]) if len(run.metrics["wall_time"]) else math.nan
    else:
        hit = reach(run, target)
        seconds = hit.seconds if hit else math.nan
    return seconds if math.isfinite(seconds) else None
