"""Shared test helpers: launch real MPI jobs of the venv's MPI under a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def launch(
    n: int, *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``mpiexec -n n mpihybrid ARGS`` with the venv's mpiexec; a hang becomes a test failure."""
    cmd = [str(BIN / "mpiexec"), "-n", str(n), str(BIN / "mpihybrid"), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip, saying why, where torch finds no CUDA device: in this process,
    without an mpirun per MPI test (their ``mpi`` mark is dropped, so pytest-isolate-mpi lets them be)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason=f"needs CUDA: torch {torch.__version__} (CUDA build: {torch.version.cuda}) finds no CUDA device"
    )
    for item in items:
        if "cuda" in item.keywords:
            item.own_markers = [m for m in item.own_markers if m.name != "mpi"]
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def no_stale_shared_memory():
    """After the session, remove the MPICH segments that aborted and timed-out jobs left in /dev/shm
    (docs/hpc.md); segments still mapped by a live process are kept. Not in the per-test MPI
    sub-sessions (their sibling ranks are still running)."""
    yield
    if "PMI_RANK" not in os.environ:
        subprocess.run([str(REPO / "slurm" / "clean-shm.sh")], capture_output=True, timeout=60)


def rank_pids(marker: str | Path) -> list[int]:
    """PIDs of the `mpihybrid run` rank processes whose command line holds ``marker`` (e.g. their
    --out path), not their launcher's (Python runs the `mpihybrid` script)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = any(str(marker).encode() in c for c in cmd) and b"run" in cmd
        if ours and b"python" in os.path.basename(cmd[0]):  # not mpiexec, srun or a shell
            pids.append(int(entry))
    return pids


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
