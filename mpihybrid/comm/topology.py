"""Role plans: the world split into named groups of ranks.

A plan maps a role to a rank count (``{"update": 3, "curvature": 1}``), a fraction of the world
(``{"update": 0.75, "curvature": 0.25}``, kfac-style) or an explicit rank list (Horovod-style
process sets). Roles take contiguous rank blocks in plan order. Every rank belongs to exactly
one role; `Topology` makes one sub-communicator per role with a single ``Split``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mpihybrid.comm.communicator import Comm

RoleSpec = int | float | Sequence[int]


class PlanError(ValueError):
    """A role plan that cannot be laid out on the job's ranks."""


def resolve_plan(plan: Mapping[str, RoleSpec], size: int) -> dict[str, list[int]]:
    """Turn a plan into rank lists covering ``range(size)`` exactly once, or raise PlanError."""
    if not plan:
        raise PlanError("the role plan is empty")
    if len(plan) > size:
        raise PlanError(f"{len(plan)} roles ({', '.join(plan)}) need at least {len(plan)} ranks; the job has {size}")
    specs = list(plan.values())
    if all(isinstance(s, (list, tuple, range)) for s in specs):
        groups = {name: [int(r) for r in ranks] for name, ranks in plan.items()}
    elif all(isinstance(s, int) and not isinstance(s, bool) for s in specs):
        groups = _contiguous(plan, size)
    elif all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < 1 for s in specs):
        groups = _contiguous(_fractions_to_counts(plan, size), size)
    else:
        raise PlanError(
            f"a role plan gives every role a rank count, a fraction in (0, 1) or a rank list; got {dict(plan)}"
        )
    for name, ranks in groups.items():
        if not ranks:
            raise PlanError(f"role '{name}' has no ranks")
    flat = sorted(r for ranks in groups.values() for r in ranks)
    if flat != list(range(size)):
        raise PlanError(f"the plan assigns ranks {flat}; every rank 0..{size - 1} must have exactly one role")
    return groups


def _contiguous(counts: Mapping[str, int], size: int) -> dict[str, list[int]]:
    total = sum(counts.values())
    if total != size:
        raise PlanError(f"the plan {dict(counts)} asks for {total} ranks; the job has {size}")
    groups, start = {}, 0
    for name, count in counts.items():
        if count < 1:
            raise PlanError(f"role '{name}' has no ranks")
        groups[name] = list(range(start, start + count))
        start += count
    return groups


def _fractions_to_counts(fractions: Mapping[str, float], size: int) -> dict[str, int]:
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-9):
        raise PlanError(f"role fractions {dict(fractions)} must sum to 1")
    counts = {name: max(1, math.floor(f * size)) for name, f in fractions.items()}
    # Hand out the remaining ranks by largest remainder, then take back from the largest group.
    by_remainder = sorted(fractions, key=lambda n: fractions[n] * size - math.floor(fractions[n] * size), reverse=True)
    i = 0
    while sum(counts.values()) < size:
        counts[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(counts.values()) > size:
        counts[max(counts, key=counts.get)] -= 1
    return counts


class Topology:
    """The world plus one sub-communicator per role of a plan; `role` is this rank's.

    Collective over ``world``. All role communicators share the world's `CommStats`.
    """

    def __init__(self, world: Comm, plan: Mapping[str, RoleSpec]):
        self.world = world
        self.groups = resolve_plan(plan, world.size)
        self.roles = list(self.groups)
        self.role = next(name for name, ranks in self.groups.items() if world.rank in ranks)
        color = self.roles.index(self.role)
        self.comm = world.Split(color, key=self.groups[self.role].index(world.rank))

    def ranks(self, role: str) -> list[int]:
        """World ranks of ``role``, in the order of their ranks in the role's communicator."""
        return self.groups[role]

    def leader(self, role: str) -> int:
        """World rank of the role's rank 0."""
        return self.groups[role][0]

    def free(self) -> None:
        self.comm.Free()
