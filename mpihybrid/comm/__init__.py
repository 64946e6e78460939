"""MPI communication: counted buffer collectives, role topologies, abort-on-error."""

from mpihybrid.comm.accounting import CommStats, Totals
from mpihybrid.comm.communicator import Comm
from mpihybrid.comm.failure import abort_on_error, check_world_size
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
]
