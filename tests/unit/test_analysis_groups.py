"""Run labels name the algorithm, then what differs between runs of that algorithm (seed last);
runs that differ only in the seed form a group."""

import copy

from analysis_files import write_run

from mpihybrid.analysis.groups import group_runs, run_labels, short_paths, varied_keys
from mpihybrid.analysis.runs import load_runs

DECOMFL = {
    "seed": 1,
    "train": {"steps": 600, "lr": 0.02, "eval_every": 250},
    "zo": {"perturbations": 5, "direction": "gaussian"},
    "checkpoint": {"every": 500},
}
FEDAVG = {"seed": 0, "train": {"steps": 300, "lr": 0.1, "eval_every": 25}}


def config(base: dict, **changes) -> dict:
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[key] = value
    return out


def runs_of(tmp_path, specs):
    files = [write_run(tmp_path / f"{i}.h5", algorithm=a, config=c) for i, (a, c) in enumerate(specs)]
    return load_runs([str(f) for f in files])[0]


def test_two_algorithms_name_only_what_differs_within_each(tmp_path):
    runs = runs_of(
        tmp_path,
        [("decomfl", config(DECOMFL, seed=1)), ("decomfl", config(DECOMFL, seed=2)), ("fedavg", FEDAVG)],
    )
    assert varied_keys(runs) == {"decomfl": ["seed"], "fedavg": []}
    assert run_labels(runs) == ["decomfl seed=1", "decomfl seed=2", "fedavg"]
    groups = group_runs(runs)
    assert [g.label for g in groups] == ["decomfl (2 seeds)", "fedavg"]
    assert [[r.path.name for r in g.runs] for g in groups] == [["0.h5", "1.h5"], ["2.h5"]]
    assert groups[0].run_labels == ["decomfl seed=1", "decomfl seed=2"]


def test_a_sweep_with_seeds_puts_the_seed_last_and_groups_by_the_rest(tmp_path):
    specs = [
        ("decomfl", config(DECOMFL, seed=s, zo__perturbations=p, checkpoint__every=100 * s))
        for p in (5, 10)
        for s in (1, 2, 3)
    ]
    runs = runs_of(tmp_path, specs)
    assert varied_keys(runs) == {"decomfl": ["zo.perturbations", "seed"]}  # checkpoint.* never
    assert run_labels(runs)[:2] == ["decomfl perturbations=5 seed=1", "decomfl perturbations=5 seed=2"]
    labels = [g.label for g in group_runs(runs)]
    assert labels == ["decomfl perturbations=5 (3 seeds)", "decomfl perturbations=10 (3 seeds)"]


def test_keys_with_the_same_last_part_keep_their_section(tmp_path):
    runs = runs_of(
        tmp_path,
        [("fedavg", config(FEDAVG, train__lr=lr, fl__lr=2 * lr)) for lr in (0.1, 0.2)],
    )
    assert run_labels(runs) == ["fedavg fl.lr=0.2 train.lr=0.1", "fedavg fl.lr=0.4 train.lr=0.2"]


def test_equal_configs_are_told_apart_by_their_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = [write_run(tmp_path / d / "results.h5", algorithm="fedavg", config=FEDAVG) for d in ("a", "b")]
    runs = load_runs([str(f) for f in files])[0]
    assert short_paths([r.path for r in runs]) == ["a/results", "b/results"]
    assert run_labels(runs) == ["fedavg [a/results]", "fedavg [b/results]"]
    assert [g.label for g in group_runs(runs)] == ["fedavg (2 runs)"]  # repeats, not seeds


def test_a_key_only_one_run_sets_shows_as_a_dash_for_the_others(tmp_path):
    runs = runs_of(tmp_path, [("fedavg", FEDAVG), ("fedavg", config(FEDAVG, train__momentum=0.9))])
    assert run_labels(runs) == ["fedavg momentum=-", "fedavg momentum=0.9"]
