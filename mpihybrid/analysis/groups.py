"""Short names for runs and groups of seeds.

A run is named by its algorithm, then only the config keys that differ between runs of that
algorithm (seed last): keys that differ only because the algorithms differ say nothing. Runs
whose configs are equal but for the seed form a group, summarised as median and range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpihybrid.analysis.runs import RunRecord

# Keys that cannot change what a run computes (a resume may change them).
OUTCOME_FREE = ("checkpoint.",)
MISSING = "-"


@dataclass
class Group:
    """Runs of one configuration that differ only in their seed."""

    label: str
    runs: list[RunRecord]
    run_labels: list[str]


def _seed_last(keys: set[str]) -> list[str]:
    return sorted(keys, key=lambda k: (k == "seed", k))


def varied_keys(runs: list[RunRecord]) -> dict[str, list[str]]:
    """For each algorithm, the config keys whose values differ between its runs (seed last)."""
    by_algorithm: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_algorithm.setdefault(run.algorithm, []).append(run)
    varied = {}
    for algorithm, members in by_algorithm.items():
        flats = [r.flat_config for r in members]
        keys = {k for f in flats for k in f if not k.startswith(OUTCOME_FREE)}
        varied[algorithm] = _seed_last({k for k in keys if len({repr(f.get(k, MISSING)) for f in flats}) > 1})
    return varied


def _display_names(keys: set[str]) -> dict[str, str]:
    """``train.lr`` shows as ``lr`` unless another shown key also ends in ``lr``."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (k.rsplit(".", 1)[-1] if last.count(k.rsplit(".", 1)[-1]) == 1 else k) for k in keys}


def _value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label(run: RunRecord, keys: list[str], names: dict[str, str]) -> str:
    parts = [f"{names[k]}={_value(run.flat_config.get(k, MISSING))}" for k in keys]
    return " ".join([run.algorithm, *parts])


def short_paths(paths: list[Path]) -> list[str]:
    """The fewest trailing path parts (without .h5) that tell the files apart."""
    stems = [p.with_suffix("").parts for p in paths]
    for depth in range(1, max(len(s) for s in stems) + 1):
        names = ["/".join(s[-depth:]) for s in stems]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def run_labels(runs: list[RunRecord]) -> list[str]:
    """One short, unique label per run; runs with equal configs get their file name added."""
    if not runs:
        return []
    varied = varied_keys(runs)
    names = _display_names({k for keys in varied.values() for k in keys})
    labels = [_label(r, varied[r.algorithm], names) for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{path}]" for label, path in zip(labels, short_paths([r.path for r in runs]))]
    return labels


def group_runs(runs: list[RunRecord]) -> list[Group]:
    """Runs with equal configs but for the seed, in order of first appearance."""
    varied = varied_keys(runs)
    names = _display_names({k for keys in varied.values() for k in keys})
    labels = run_labels(runs)
    groups: dict[tuple, Group] = {}
    for run, run_label in zip(runs, labels):
        without_seed = [k for k in varied[run.algorithm] if k != "seed"]
        identity = (run.algorithm, *(repr(run.flat_config.get(k, MISSING)) for k in without_seed))
        group = groups.setdefault(identity, Group(_label(run, without_seed, names), [], []))
        group.runs.append(run)
        group.run_labels.append(run_label)
    for group in groups.values():
        if len(group.runs) > 1:
            seeds = {repr(r.flat_config.get("seed", 0)) for r in group.runs}
            group.label += f" ({len(group.runs)} {'seeds' if len(seeds) == len(group.runs) else 'runs'})"
    return list(groups.values())
