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
            sha = [s.decode() if isinstance(s, bytes) else s for s in f["final/param_sha256"][()]] \
                if "final/param_sha256" in f else []
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


def summary_table(runs: list[RunRecord], fmt: str) -> str:
    header = ["file", "algorithm", "ranks", "status", "steps", "train_loss", "test_accuracy", "wall_time",
              "sent_MB_rank0", "identical_params"]
    rows = []
    for r in runs:
        sent = sum(float(g["payload_bytes"][0]) for g in r.comm.values()) / 1e6 if r.comm else math.nan
        rows.append([r.path.name, r.attrs["algorithm"], int(r.attrs["world_size"]), r.attrs["status"],
                     _last(r.metrics["step"]) if len(r.metrics["step"]) else math.nan,
                     _last(r.metrics.get("train_loss", np.array([math.nan]))),
                     _last(r.metrics.get("test_accuracy", np.array([math.nan]))),
                     _last(r.metrics.get("wall_time", np.array([math.nan]))), sent,
                     ("yes" if len(set(r.param_sha256)) == 1 else "NO") if r.param_sha256 else "-"])
    return _render(header, rows, fmt)


def analyze(files: list[str], fmt: str = "markdown") -> int:
    runs, bad = [], 0
    for name in files:
        try:
            runs.append(read_results(name))
        except ResultsError as exc:
            print(f"mpihybrid analyze: {exc}", file=sys.stderr)
            bad += 1
    if len(runs) == 1 and len(files) == 1:
        r = runs[0]
        print(f"{r.path}: {r.attrs['algorithm']} on {r.attrs['world_size']} ranks, status {r.attrs['status']}")
        print(metrics_table(r, fmt))
    elif runs:
        print(summary_table(runs, fmt))
    return 2 if bad else 0
