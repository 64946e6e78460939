"""Checkpoint writes: the format-1 path (gather every rank's state to rank 0, which writes one
file) against per-rank shards with a manifest (mpihybrid.io.checkpoint), side by side.

    python bench/checkpoint.py [--params 100000000] [--ranks 1 2 4] [--repeats 3] [--out DIR]

For each rank count and path, one fresh `mpiexec -n R` job holds ``--params`` float32 values of
sharded local state in total (each rank 1/R of them), then writes ``--repeats`` checkpoints.
Reported per job: the median write time (slowest rank, fsyncs included) and each rank's extra
peak memory while writing (peak RSS after the writes minus RSS before them; the job's own shard
is already counted in "before"). Results: a JSON file per job and a table in DIR/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gather_write(directory: Path, comm, step: int, state) -> None:
    """The format-1 write as it was: local trees as raw bytes through one Gatherv to rank 0, which
    writes them all into one file (the baseline; checkpoints no longer take this path)."""
    from mpihybrid.io.checkpoint import _from_array, _to_array, _write_tree, global_rng_state
    from mpihybrid.io.h5util import atomic_h5

    local = {**state.local, **global_rng_state()}
    encoded = [(name, *_to_array(v)) for name, v in local.items()]
    layout = [(name, a.dtype.str, a.shape, kind) for name, a, kind in encoded]
    payload = np.concatenate([a.reshape(-1).view(np.uint8) for _, a, _ in encoded])
    layouts = comm.mpi.gather(layout, root=0)
    counts = comm.mpi.gather(payload.size, root=0)
    gathered = np.empty(sum(counts), np.uint8) if comm.rank == 0 else None
    comm.Gatherv(payload, gathered, counts if comm.rank == 0 else [payload.size] * comm.size, root=0)
    del payload
    if comm.rank == 0:
        with atomic_h5(directory / f"checkpoint-{step:09d}.h5") as f:
            _write_tree(f.create_group("shared"), state.shared)
            offset = 0
            for rank, rank_layout in enumerate(layouts):
                tree = {}
                for name, dtype, shape, kind in rank_layout:
                    dt = np.dtype(dtype)
                    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
                    tree[name] = _from_array(gathered[offset : offset + n].view(dt).reshape(shape), kind)
                    offset += n
                _write_tree(f.create_group(f"rank/{rank}"), tree)
    comm.mpi.Barrier()


def worker(args: argparse.Namespace) -> None:
    """One job: hold this rank's shard, write ``repeats`` checkpoints by one path, report."""
    from mpi4py import MPI

    from mpihybrid.blocks import blocks
    from mpihybrid.comm import Comm
    from mpihybrid.io.checkpoint import State, save_checkpoint

    comm = Comm(MPI.COMM_WORLD)
    n = blocks(args.params, comm.size).counts[comm.rank]
    shard = np.random.default_rng(comm.rank).standard_normal(n, dtype=np.float32)
    state = State({"step": 0}, {"shard": shard})
    directory = Path(args.dir)
    comm.mpi.Barrier()
    before = rss_bytes()
    times = []
    for step in range(1, args.repeats + 1):
        comm.mpi.Barrier()
        t0 = perf_counter()
        if args.path == "gather":
            gather_write(directory, comm, step, state)
        else:
            save_checkpoint(directory, comm, step=step, algorithm="bench", config_hash="h", state=state, keep=1)
        times.append(comm.mpi.allreduce(perf_counter() - t0, op=MPI.MAX))
    extra = comm.mpi.gather(peak_rss_bytes() - before, root=0)
    if comm.rank == 0:
        report = {"path": args.path, "ranks": comm.size, "params": args.params, "seconds": times}
        report |= {"extra_peak_bytes": extra, "shard_bytes": shard.nbytes}
        Path(args.result).write_text(json.dumps(report))


def run(args: argparse.Namespace) -> list[dict]:
    reports = []
    for ranks in args.ranks:
        for path in ("gather", "shards"):
            with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
                result = Path(args.out) / f"{path}-{ranks}.json"
                cmd = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, __file__, "--worker", "--path", path]
                cmd += ["--params", str(args.params), "--repeats", str(args.repeats), "--dir", tmp]
                subprocess.run([*cmd, "--result", str(result)], check=True, timeout=1200)
                reports.append(json.loads(result.read_text()))
                print(reports[-1], flush=True)
    return reports


def table(reports: list[dict], load: str) -> str:
    by = {(r["path"], r["ranks"]): r for r in reports}
    mb = 1e6
    lines = [
        "| ranks | shard per rank | write: gather | write: shards | gather / shards "
        "| rank 0 extra: gather | rank 0 extra: shards | other ranks' max extra: gather | shards |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ranks in sorted({r["ranks"] for r in reports}):
        old, new = by["gather", ranks], by["shards", ranks]
        t_old, t_new = statistics.median(old["seconds"]), statistics.median(new["seconds"])
        others = [max(r["extra_peak_bytes"][1:], default=0) / mb for r in (old, new)]
        lines.append(
            f"| {ranks} | {new['shard_bytes'] / mb:.0f} MB | {t_old:.2f} s | {t_new:.2f} s | {t_old / t_new:.2f}x "
            f"| {old['extra_peak_bytes'][0] / mb:.0f} MB | {new['extra_peak_bytes'][0] / mb:.0f} MB "
            f"| {others[0]:.0f} MB | {others[1]:.0f} MB |"
        )
    top = max(r["ranks"] for r in reports)
    new, old = by["shards", top], by["gather", top]
    own = new["extra_peak_bytes"][0] <= 0.1 * new["shard_bytes"]
    faster = statistics.median(new["seconds"]) <= statistics.median(old["seconds"])
    lines += [
        "",
        f"Targets at {top} ranks: rank 0's extra memory within 10 % of its own shard: {'met' if own else 'NOT met'}; "
        f"shards write no slower than the gather path: {'met' if faster else 'NOT met'}.",
    ]
    return "\n".join(lines) + f"\n\nMachine: {platform.machine()}, {os.cpu_count()} CPUs shared, no GPU; {load}.\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=int, default=100_000_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "checkpoint"))
    p.add_argument("--scratch", default=None, help="where the checkpoints are written (default: the temp dir)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--path", choices=["gather", "shards"], help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    load = "load average before the runs: " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    reports = run(args)
    text = table(reports, load)
    print(text)
    (Path(args.out) / "README.md").write_text(
        "# Checkpoint writes: gather to rank 0 (format 1) vs per-rank shards (format 2)\n\n"
        f"`python bench/checkpoint.py --params {args.params} --repeats {args.repeats}`: {args.params:,} float32 "
        "values of local (sharded) state in total, split over the ranks. Write time: median of the repeats, "
        "slowest rank, fsync included. Extra: peak RSS while writing minus RSS before (own shard excluded).\n\n" + text
    )


if __name__ == "__main__":
    main()
