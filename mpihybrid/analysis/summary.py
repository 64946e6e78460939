"""What a comparison reports: one row per run and one per group of seeds (median and range).

Rows hold plain values; `table` renders them for a terminal or CSV and `report` as HTML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpihybrid.analysis.groups import Group
from mpihybrid.analysis.runs import RunRecord
from mpihybrid.analysis.targets import Reached, Target, reach, seconds_to


@dataclass(frozen=True)
class Column:
    name: str  # CSV header: stable, machine-readable
    short: str  # terminal header
    doc: str  # what it means (the terminal's key, the HTML header's title)
    kind: str = "number"  # text, count, number, seconds, bytes (a Spread cell prints its own kind)
    terminal: bool = True  # shown in the terminal table (CSV and HTML show every column)
    drop: int = 0  # a narrow terminal leaves out the highest first; 0: never left out


@dataclass(frozen=True)
class Spread:
    """Median and range of one number over a group's runs (those that have it)."""

    median: float
    low: float
    high: float
    kind: str  # how to print the numbers: number, seconds, bytes

    @classmethod
    def of(cls, values: list[float], kind: str) -> Spread | None:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return cls(float(np.median(finite)), min(finite), max(finite), kind)


def _last(run: RunRecord, name: str) -> float:
    values = run.metrics.get(name)
    if values is None:
        return math.nan
    finite = values[~np.isnan(values)]
    return float(finite[-1]) if len(finite) else math.nan


def _best(run: RunRecord, name: str) -> float:
    values = run.metrics.get(name)
    if values is None or np.isnan(values).all():
        return math.nan
    return float(np.nanmax(values) if "accuracy" in name else np.nanmin(values))


def sent_bytes(run: RunRecord) -> float:
    """Payload bytes rank 0 handed to all collectives (README: payload, not wire bytes)."""
    return float(sum(g["payload_bytes"][0] for g in run.comm.values())) if run.comm else math.nan


def identical_params(run: RunRecord) -> str:
    return ("yes" if len(set(run.param_sha256)) == 1 else "NO") if run.param_sha256 else "-"


def run_columns(target: Target | None, baseline: str | None) -> list[Column]:
    columns = [
        Column("run", "run", "algorithm, then the config keys that differ between its runs", "text"),
        Column("algorithm", "algorithm", "algorithm", "text", terminal=False),
        Column("ranks", "ranks", "MPI ranks", "count", drop=6),
        Column("steps", "steps", "last step (round, layer or iteration)", "count", drop=3),
        Column("final_train_loss", "loss", "final train_loss", drop=2),
        Column("best_train_loss", "best loss", "best train_loss", terminal=False),
        Column("final_test_accuracy", "acc", "final test_accuracy"),
        Column("best_test_accuracy", "best", "best test_accuracy", drop=5),
        Column("wall_time", "time s", "wall time of the run (s)", "seconds"),
        Column("sent_bytes_rank0", "sent", "payload bytes rank 0 sent (all collectives)", "bytes", drop=1),
        Column("identical_params", "same", "all ranks end with bitwise equal parameters", "text", drop=4),
    ]
    if target:
        columns += [
            Column("time_to_target", "→ s", f"seconds until {target}", "seconds"),
            Column("step_to_target", "→ step", "the step that reached it", "count", drop=4),
            Column("uplink_bytes_to_target", "→ uplink", "uplink bytes rank 0 sent until then", "bytes"),
        ]
    if baseline:
        columns.append(Column("speedup", "speed-up", f"speed-up against {baseline}", "text"))
    return columns


def _speedup(base_seconds: float | None, seconds: float | None) -> str:
    return f"{base_seconds / seconds:.3g}x" if base_seconds and seconds else "-"


def run_rows(
    runs: list[RunRecord], labels: list[str], target: Target | None = None, baseline: RunRecord | None = None
) -> list[dict[str, object]]:
    """One dict per run, keyed by `run_columns` names."""
    base_seconds = seconds_to(baseline, target) if baseline is not None else None
    rows = []
    for run, label in zip(runs, labels):
        row: dict[str, object] = {
            "run": label,
            "algorithm": run.algorithm,
            "ranks": run.ranks,
            "steps": int(run.metrics["step"][-1]) if len(run.metrics["step"]) else math.nan,
            "final_train_loss": _last(run, "train_loss"),
            "best_train_loss": _best(run, "train_loss"),
            "final_test_accuracy": _last(run, "test_accuracy"),
            "best_test_accuracy": _best(run, "test_accuracy"),
            "wall_time": _last(run, "wall_time"),
            "sent_bytes_rank0": sent_bytes(run),
            "identical_params": identical_params(run),
        }
        if target:
            hit = reach(run, target)
            row.update(
                time_to_target=hit.seconds if hit else "not reached",
                step_to_target=hit.step if hit else math.nan,
                uplink_bytes_to_target=hit.uplink_bytes if hit else math.nan,
            )
        if baseline is not None:
            row["speedup"] = _speedup(base_seconds, seconds_to(run, target))
        rows.append(row)
    return rows


def group_columns(target: Target | None) -> list[Column]:
    columns = [
        Column("group", "group", "runs whose configs differ only in the seed", "text"),
        Column("final_test_accuracy", "acc", "final test_accuracy", drop=1),
        Column("best_test_accuracy", "best", "best test_accuracy", drop=3),
        Column("wall_time", "time s", "wall time (s)", "seconds", drop=2),
    ]
    if target:
        columns += [
            Column("reached", "reached", f"runs that reached {target}", "text"),
            Column("time_to_target", "→ s", f"seconds until {target} (runs that reached it)", "seconds"),
            Column("uplink_bytes_to_target", "→ uplink", "uplink bytes rank 0 sent until then", "bytes"),
        ]
    return columns


def group_rows(groups: list[Group], target: Target | None = None) -> list[dict[str, object]]:
    """One dict per group, keyed by `group_columns` names; spreads over the runs that have the value."""
    rows = []
    for group in groups:
        row: dict[str, object] = {
            "group": group.label,
            "final_test_accuracy": Spread.of([_last(r, "test_accuracy") for r in group.runs], "number"),
            "best_test_accuracy": Spread.of([_best(r, "test_accuracy") for r in group.runs], "number"),
            "wall_time": Spread.of([_last(r, "wall_time") for r in group.runs], "seconds"),
        }
        if target:
            hits: list[Reached] = [h for h in (reach(r, target) for r in group.runs) if h]
            row.update(
                reached=f"{len(hits)}/{len(group.runs)}",
                time_to_target=Spread.of([h.seconds for h in hits], "seconds"),
                uplink_bytes_to_target=Spread.of([h.uplink_bytes for h in hits], "bytes"),
            )
        rows.append(row)
    return rows
