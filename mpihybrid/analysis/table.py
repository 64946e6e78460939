"""`mpihybrid analyze`: one row per results file, or a file's metrics when it is alone.

Each file is read on its own; a missing, truncated or foreign file gets a one-line message
and the others are still analysed (exit code 2 if any file was bad).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mpihybrid.io.results import SCHEMA_VERSION


@dataclass
class RunRecord:
    path: Path
    attrs: dict
    metrics: dict[str, np.ndarray]
    comm: dict[str, dict[str, np.ndarray]]
    memory: dict[str, np.ndarray]
    param_sha256: list[str]

    @property
    def config(self) -> dict:
        return json.loads(self.attrs["config"])


class ResultsError(Exception):
    pass


def read_results(path: str | Path) -> RunRecord:
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise ResultsError(f"{path}: schema version {attrs.get('schema_version')} is not {SCHEMA_VERSION}")
            metrics = {k: f["metrics"][k][()] for k in f["metrics"]}
            comm = {kind: {k: g[k][()] for k in g} for kind, g in f.get("comm", {}).items()}
            memory = {k: f["memory"][k][()] for k in f.get("memory", {})}
            sha = (
                [s.decode() if isinstance(s, bytes) else s for s in f["final/param_sha256"][()]]
                if "final/param_sha256" in f
                else []
            )
    except OSError as exc:
        raise ResultsError(f"{path}: unreadable (truncated or not HDF5): {exc}") from None
    except KeyError as exc:
        raise ResultsError(f"{path}: not an mpihybrid results file (missing {exc})") from None
    return RunRecord(path, attrs, metrics, comm, memory, sha)


def _fmt(v: float) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, np.integer)) or float(v).is_integer() and abs(v) >= 1:
        return f"{int(v)}"
    return f"{v:.4g}"


def _render(header: list[str], rows: list[list], fmt: str) -> str:
    cells = [[_fmt(v) for v in row] for row in rows]
    if fmt == "csv":
        return "\n".join(",".join(r) for r in [header, *cells])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def _last(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    return float(finite[-1]) if len(finite) else math.nan


PREFERRED_ORDER = ("wall_time", "train_loss", "test_loss", "test_accuracy", "uplink_bytes", "downlink_bytes")


def metrics_table(run: RunRecord, fmt: str) -> str:
    first = [k for k in PREFERRED_ORDER if k in run.metrics]
    names = first + sorted(k for k in run.metrics if k not in first and k != "step")
    rows = [[int(s), *(run.metrics[n][i] for n in names)] for i, s in enumerate(run.metrics["step"])]
    return _render(["step", *names], rows, fmt)


def flat_config(config: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


def varied_keys(runs: list[RunRecord]) -> list[str]:
    """Config keys (dotted) whose values differ between the runs: what a sweep varied."""
    flats = [
        {**flat_config(r.config), "ranks": int(r.attrs["world_size"]), "algorithm": r.attrs["algorithm"]} for r in runs
    ]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]


def run_labels(runs: list[RunRecord]) -> list[str]:
    """A short label per run: the varied keys' values, else the file name."""
    keys = varied_keys(runs)
    if not keys or len(runs) == 1:
        return [r.path.stem for r in runs]
    labels = []
    for r in runs:
        flat = {**flat_config(r.config), "ranks": int(r.attrs["world_size"]), "algorithm": r.attrs["algorithm"]}
        labels.append(", ".join(f"{k.split('.')[-1] if k.count('.') else k}={flat.get(k, '-')}" for k in keys))
    return labels if len(set(labels)) == len(labels) else [f"{l} ({r.path.stem})" for l, r in zip(labels, runs)]


def parse_target(text: str) -> tuple[str, str, float]:
    """'test_accuracy>=0.9', 'train_loss<=0.05', or 'NAME=V' (>= for accuracies, <= otherwise)."""
    for op in (">=", "<="):
        if op in text:
            name, value = text.split(op, 1)
            return name.strip(), op, float(value)
    if "=" in text:
        name, value = text.split("=", 1)
        name = name.strip()
        return name, ">=" if "accuracy" in name else "<=", float(value)
    raise ResultsError(f"--target '{text}': expected NAME>=VALUE, NAME<=VALUE or NAME=VALUE")


def time_to_target(run: RunRecord, name: str, op: str, value: float) -> tuple[float, float, int] | None:
    """(wall time, cumulative uplink bytes, step) at the first row meeting the target, or None."""
    if name not in run.metrics:
        return None
    y = run.metrics[name]
    hit = np.flatnonzero(~np.isnan(y) & ((y >= value) if op == ">=" else (y <= value)))
    if not len(hit):
        return None
    i = int(hit[0])
    up = run.metrics.get("uplink_bytes")
    sent = float(np.nansum(up[: i + 1])) if up is not None else math.nan
    return float(run.metrics["wall_time"][i]), sent, int(run.metrics["step"][i])


def _best(run: RunRecord, name: str) -> float:
    values = run.metrics.get(name)
    if values is None or np.isnan(values).all():
        return math.nan
    return float(np.nanmax(values) if "accuracy" in name else np.nanmin(values))


def summary_table(
    runs: list[RunRecord], fmt: str, target: tuple[str, str, float] | None = None, baseline: RunRecord | None = None
) -> str:
    """One row per run: final and best metrics, time and uplink bytes to the target, and the
    speed-up against ``baseline`` (its time to the target, or its run time, over this run's)."""
    labels = run_labels(runs)
    header = [
        "run",
        "algorithm",
        "ranks",
        "steps",
        "final train_loss",
        "best train_loss",
        "final test_accuracy",
        "best test_accuracy",
        "wall_time",
        "sent_MB_rank0",
        "identical_params",
    ]
    if target:
        header += [f"time to {target[0]}{target[1]}{target[2]:g}", "step reached", "uplink bytes to target"]
    if baseline is not None:
        header.append(f"speed-up vs {baseline.path.stem}")
    base_time = None
    if baseline is not None:
        hit = time_to_target(baseline, *target) if target else None
        base_time = hit[0] if target else float(baseline.metrics["wall_time"][-1])
    rows = []
    for r, label in zip(runs, labels):
        sent = sum(float(g["payload_bytes"][0]) for g in r.comm.values()) / 1e6 if r.comm else math.nan
        row = [
            label,
            r.attrs["algorithm"],
            int(r.attrs["world_size"]),
            _last(r.metrics["step"]) if len(r.metrics["step"]) else math.nan,
            _last(r.metrics.get("train_loss", np.array([math.nan]))),
            _best(r, "train_loss"),
            _last(r.metrics.get("test_accuracy", np.array([math.nan]))),
            _best(r, "test_accuracy"),
            _last(r.metrics.get("wall_time", np.array([math.nan]))),
            sent,
            ("yes" if len(set(r.param_sha256)) == 1 else "NO") if r.param_sha256 else "-",
        ]
        hit = time_to_target(r, *target) if target else None
        if target:
            row += [hit[0], hit[2], hit[1]] if hit else ["not reached", "-", "-"]
        if baseline is not None:
            mine = hit[0] if target and hit else (None if target else float(r.metrics["wall_time"][-1]))
            row.append(f"{base_time / mine:.3g}x" if base_time and mine else "-")
        rows.append(row)
    return _render(header, rows, fmt)


def load_runs(files: list[str]) -> tuple[list[RunRecord], int]:
    """The completed runs among ``files``; one message per file that cannot be used."""
    runs, bad = [], 0
    for name in files:
        try:
            run = read_results(name)
            if run.attrs["status"] != "completed":
                why = run.attrs.get("error") or "it stopped before the end"
                raise ResultsError(f"{run.path}: run {run.attrs['status']} ({why}); left out")
            runs.append(run)
        except ResultsError as exc:
            print(f"mpihybrid analyze: {exc}", file=sys.stderr)
            bad += 1
    return runs, bad


def analyze(
    files: list[str],
    fmt: str = "markdown",
    target: str | None = None,
    baseline: str | None = None,
    plots: str | None = None,
) -> int:
    """Print the table (a single run: its metrics per step; several: one row each); write plots."""
    runs, bad = load_runs(files)
    parsed = parse_target(target) if target else None
    base = None
    if baseline:
        base_runs, base_bad = load_runs([baseline])
        bad += base_bad
        base = base_runs[0] if base_runs else None
    if len(runs) == 1 and len(files) == 1 and not (target or baseline):
        r = runs[0]
        print(f"{r.path}: {r.attrs['algorithm']} on {r.attrs['world_size']} ranks, status {r.attrs['status']}")
        print(metrics_table(r, fmt))
    elif runs:
        keys = varied_keys(runs)
        if keys and fmt == "markdown":
            print(f"varied: {', '.join(keys)}\n")
        print(summary_table(runs, fmt, parsed, base))
    if plots and runs:
        from mpihybrid.analysis.plots import write_plots

        written = write_plots(runs, run_labels(runs), plots, parsed)
        print(f"\n{len(written)} plots in {plots}: {', '.join(p.path.name for p in written)}", file=sys.stderr)
    return 2 if bad else 0
