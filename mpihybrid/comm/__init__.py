"""MPI communication: counted buffer collectives (host or CUDA buffers), role topologies, abort-on-error."""

from mpihybrid.comm.accounting import CommStats, Totals
from mpihybrid.comm.communicator import Comm
from mpihybrid.comm.failure import abort_on_error, check_world_size
from mpihybrid.comm.staging import PATH_ENV, cuda_aware_mpi
from mpihybrid.comm.topology import PlanError, Topology, resolve_plan

__all__ = [
    "Comm",
    "CommStats",
    "Totals",
    "Topology",
    "PlanError",
    "resolve_plan",
    "abort_on_error",
    "check_world_size",
    "cuda_aware_mpi",
    "PATH_ENV",
]
