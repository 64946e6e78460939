"""Root conftest: make the venv's MPI launcher the one tests find, and let `pytest -q` work.

pytest-isolate-mpi launches `mpirun` from PATH; Debian's may exist and belong to another MPI
(docs/hpc.md), which would start N singletons instead of one N-rank job.
"""

import argparse
import os
import sys

from pytest_isolate_mpi import _subsession

os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]

_add_reporting_options = _subsession._add_reporting_options


def _reporting_options_without_quiet(cmd: list[str], option: argparse.Namespace) -> None:
    """pytest-isolate-mpi 0.4.1 turns a negative verbosity (``-q``) into a bare "-" argument of
    the per-test pytest under mpirun, which then fails every MPI test ("file or directory not
    found: -"). The sub-sessions report back through the plugin, so they run at verbosity 0."""
    _add_reporting_options(cmd, argparse.Namespace(**{**vars(option), "verbose": max(option.verbose, 0)}))


_subsession._add_reporting_options = _reporting_options_without_quiet
