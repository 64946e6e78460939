"""The test runner itself: a deadlocked or crashing MPI test must fail within its timeout,
never hang the suite (pytest-isolate-mpi runs each MPI test in its own mpirun)."""

import subprocess
import sys
import textwrap

from conftest import REPO

BAD_TESTS = textwrap.dedent("""
    import os
    import pytest
    from mpi4py import MPI

    @pytest.mark.mpi(ranks=2)
    def test_deadlock():
        if MPI.COMM_WORLD.rank == 0:
            MPI.COMM_WORLD.recv(source=1)  # never sent
        MPI.COMM_WORLD.Barrier()

    @pytest.mark.mpi(ranks=2)
    def test_rank_crash():
        if MPI.COMM_WORLD.rank == 1:
            os.abort()
        MPI.COMM_WORLD.Barrier()

    @pytest.mark.mpi(ranks=2)
    def test_fails_on_rank_1_only():
        assert MPI.COMM_WORLD.rank != 1, "rank 1 fails"

    @pytest.mark.mpi(ranks=2)
    def test_good():
        assert MPI.COMM_WORLD.allreduce(1) == 2
""")


def test_hangs_and_crashes_become_failures(tmp_path):
    (tmp_path / "test_bad.py").write_text(BAD_TESTS)
    (tmp_path / "conftest.py").write_text((REPO / "conftest.py").read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "--mpi-default-test-timeout=10",
            str(tmp_path / "test_bad.py"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "test_good[2][rank=0] PASSED" in out and "test_good[2][rank=1] PASSED" in out, out
    assert "FAILED test_bad.py::test_fails_on_rank_1_only[2][rank=1]" in out and "rank 1 fails" in out, out
    assert "test_deadlock" in out and "Timeout" in out, out
    assert "FAILED test_bad.py::test_rank_crash" in out, out
