"""Root conftest: make the venv's MPI launcher the one tests find.

pytest-isolate-mpi launches `mpirun` from PATH; Debian's may exist and belong to another MPI
(hpc_stack.md §3c), which would start N singletons instead of one N-rank job.
"""

import os
import sys

os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
