"""Balanced contiguous blocks: how n items (parameters, Lanczos vectors, virtual clients) are
split over the ranks of a communicator, the same way everywhere in the package.

Rank r owns ``counts[r]`` consecutive items starting at ``offsets[r]``; the first ``n % parts``
ranks own one item more, so no rank is padded. A split is computed once and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Blocks:
    n: int
    counts: tuple[int, ...]
    offsets: tuple[int, ...]

    def slice(self, rank: int) -> slice:
        return slice(self.offsets[rank], self.offsets[rank] + self.counts[rank])

    def range(self, rank: int) -> range:
        return range(self.offsets[rank], self.offsets[rank] + self.counts[rank])


@cache
def blocks(n: int, parts: int) -> Blocks:
    """n items over ``parts`` ranks in balanced contiguous blocks."""
    if parts < 1:
        raise ValueError(f"cannot split {n} items over {parts} ranks")
    base, extra = divmod(n, parts)
    counts = tuple(base + (1 if r < extra else 0) for r in range(parts))
    offsets = tuple(sum(counts[:r]) for r in range(parts))
    return Blocks(n, counts, offsets)
