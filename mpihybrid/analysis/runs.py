"""Reading results files: only the README "Results file" schema, one message per unusable file.

Each file is read on its own, so a missing, truncated, failed or foreign file is reported and
the others are still analysed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from mpihybrid.io.results import SCHEMA_VERSION

# The metrics people look at first, in that order (tables and figures); the rest follow by name.
MAIN_METRICS = ("wall_time", "train_loss", "test_loss", "test_accuracy", "uplink_bytes", "downlink_bytes")
REQUIRED_ATTRS = ("algorithm", "world_size", "status", "config")
REQUIRED_METRICS = ("step",)


class ResultsError(Exception):
    """A file that cannot be analysed; the message names the file and why."""


@dataclass
class RunRecord:
    """One results file as read: root attributes, metrics, comm and memory per rank, hashes,
    and the other /final/ values (last metrics as scalars, per-rank counters as arrays)."""

    path: Path
    attrs: dict
    metrics: dict[str, np.ndarray]
    comm: dict[str, dict[str, np.ndarray]]
    memory: dict[str, np.ndarray]
    param_sha256: list[str]
    config: dict
    final: dict[str, np.ndarray]

    @property
    def algorithm(self) -> str:
        return str(self.attrs["algorithm"])

    @property
    def ranks(self) -> int:
        return int(self.attrs["world_size"])

    @cached_property
    def flat_config(self) -> dict[str, object]:
        """The config as dotted keys (``train.lr``), lists as JSON text, plus ``ranks``."""
        return {**flatten(self.config), "ranks": self.ranks}


def metric_order(names: Iterable[str]) -> list[str]:
    """``names`` (less ``step``) with the main metrics first, the rest by name."""
    present = set(names) - {"step"}
    return [k for k in MAIN_METRICS if k in present] + sorted(present - set(MAIN_METRICS))


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested sections as dotted keys; lists as JSON text, so that values compare and print."""
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def read_results(path: str | Path) -> RunRecord:
    """Read one results file; raises ResultsError naming the file if it is not one."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _text(v) for k, v in f.attrs.items()}
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise ResultsError(f"{path}: schema version {attrs.get('schema_version')} is not {SCHEMA_VERSION}")
            metrics = {k: f["metrics"][k][()] for k in f["metrics"]}
            comm = {kind: {k: g[k][()] for k in g} for kind, g in f.get("comm", {}).items()}
            memory = {k: f["memory"][k][()] for k in f.get("memory", {})}
            sha = [_text(s) for s in f["final/param_sha256"][()]] if "final/param_sha256" in f else []
            final = {k: f["final"][k][()] for k in f.get("final", {}) if k != "param_sha256"}
            missing = [k for k in REQUIRED_ATTRS if k not in attrs] + [
                f"metrics/{k}" for k in REQUIRED_METRICS if k not in metrics
            ]
            if missing:
                raise ResultsError(f"{path}: not an mpihybrid results file (missing {', '.join(missing)})")
            config = json.loads(attrs["config"])
            # NaN marks what was not measured (README); a file without wall times still tabulates.
            metrics.setdefault("wall_time", np.full(len(metrics["step"]), np.nan))
    except OSError as exc:
        raise ResultsError(f"{path}: unreadable (truncated or not HDF5): {exc}") from None
    except KeyError as exc:
        raise ResultsError(f"{path}: not an mpihybrid results file (missing {exc})") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: config attribute is not JSON ({exc})") from None
    return RunRecord(path, attrs, metrics, comm, memory, sha, config, final)


def load_runs(files: list[str]) -> tuple[list[RunRecord], list[str]]:
    """The completed runs among ``files``, and one message per file that cannot be used
    (also printed to stderr as it is found)."""
    runs, problems = [], []
    for name in files:
        try:
            run = read_results(name)
            if run.attrs["status"] != "completed":
                why = run.attrs.get("error") or "it stopped before the end"
                raise ResultsError(f"{run.path}: run {run.attrs['status']} ({why}); left out")
            runs.append(run)
        except ResultsError as exc:
            print(f"mpihybrid analyze: {exc}", file=sys.stderr)
            problems.append(str(exc))
    return runs, problems
