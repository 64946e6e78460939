"""Balanced contiguous blocks: the one split of items over ranks."""

import numpy as np
import pytest

from mpihybrid.blocks import blocks


@pytest.mark.parametrize("n, parts", [(10, 4), (2410, 8), (2, 4), (7, 1), (0, 3)])
def test_blocks_cover_everything_once_like_numpy_array_split(n, parts):
    split = blocks(n, parts)
    assert sum(split.counts) == n and max(split.counts) - min(split.counts) <= 1
    got = [list(split.range(r)) for r in range(parts)]
    assert got == [list(a) for a in np.array_split(np.arange(n), parts)]
    assert [list(range(n))[split.slice(r)] for r in range(parts)] == got


def test_blocks_are_computed_once():
    assert blocks(100, 3) is blocks(100, 3)
    with pytest.raises(ValueError):
        blocks(5, 0)
