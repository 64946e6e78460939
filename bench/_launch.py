"""Helpers for the benchmarks: launch `mpihybrid run` jobs and read their results files."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpihybrid.analysis import read_results

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def run_job(
    ranks: int,
    algorithm: str,
    config: Path,
    out: Path,
    *overrides: str,
    timeout: float = 1800,
    checkpoint: Path | None = None,
) -> dict:
    """Run one job to completion (raising with its output on failure); return its metrics,
    per-rank comm totals, parameter hashes, final values and per-rank memory."""
    cmd = [
        str(BIN / "mpiexec"),
        "-n",
        str(ranks),
        str(BIN / "mpihybrid"),
        "run",
        algorithm,
        "--config",
        str(config),
        "--out",
        str(out),
        "--overwrite",
    ]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    run = read_results(out)
    return {"metrics": run.metrics, "comm": run.comm, "sha": run.param_sha256, "final": run.final, "memory": run.memory}


def first_step_reaching(metrics: dict, name: str, target: float) -> int | None:
    values = metrics[name]
    hit = np.flatnonzero(~np.isnan(values) & (values >= target))
    return int(metrics["step"][hit[0]]) if len(hit) else None


def write_report(out: Path, title: str, intro: str, parts: dict[str, Callable[[], list[str]]], only: list[str]) -> None:
    """Run the chosen parts, print their tables and write out/README.md. Sections ("## N. ...")
    of parts not run this time are kept from the existing README, so ``--only`` reruns one part."""
    sections: dict[str, str] = {}
    readme = out / "README.md"
    if readme.exists():
        for chunk in re.split(r"\n(?=## )", readme.read_text()):
            if chunk.startswith("## "):
                sections[chunk.split()[1]] = chunk.strip()
    for name in only:
        new = parts[name]()
        print("\n".join(new), flush=True)
        text = "\n".join(new).strip()
        sections[text.split()[1]] = text
    ordered = sorted(sections.items(), key=lambda kv: int(re.match(r"\d+", kv[0]).group()))
    readme.write_text("\n\n".join([f"# {title}", intro, *(text for _, text in ordered)]) + "\n")
