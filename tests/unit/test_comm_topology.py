import pytest

from mpihybrid.comm import PlanError, resolve_plan


def test_counts_take_contiguous_blocks():
    assert resolve_plan({"update": 3, "curvature": 1}, 4) == {"update": [0, 1, 2], "curvature": [3]}


def test_fractions_round_to_whole_groups():
    assert resolve_plan({"update": 0.75, "curvature": 0.25}, 4) == {"update": [0, 1, 2], "curvature": [3]}
    groups = resolve_plan({"a": 0.5, "b": 0.3, "c": 0.2}, 3)
    assert sorted(len(v) for v in groups.values()) == [1, 1, 1]
    groups = resolve_plan({"a": 0.9, "b": 0.1}, 8)
    assert len(groups["b"]) >= 1 and len(groups["a"]) + len(groups["b"]) == 8


def test_rank_lists_like_process_sets():
    assert resolve_plan({"even": [0, 2], "odd": [1, 3]}, 4) == {"even": [0, 2], "odd": [1, 3]}


@pytest.mark.parametrize(
    "plan, size, words",
    [
        ({"a": 1, "b": 1, "c": 1}, 2, "3 roles"),
        ({"a": 2, "b": 0}, 2, "no ranks"),
        ({"a": 3, "b": 2}, 4, "asks for 5 ranks"),
        ({"a": [0, 1], "b": [1]}, 2, "exactly one role"),
        ({"a": [0], "b": []}, 2, "no ranks"),
        ({"a": 0.5, "b": 0.4}, 4, "sum to 1"),
        ({}, 2, "empty"),
        ({"a": "all"}, 2, "rank count"),
    ],
)
def test_bad_plans(plan, size, words):
    with pytest.raises(PlanError, match=words):
        resolve_plan(plan, size)
