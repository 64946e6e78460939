"""Raw mpi4py versus the mpihybrid.comm wrappers, side by side in one run.

    mpiexec -n 2 python bench/collectives.py [--small-iters 20000] [--large-iters 30]

For an 8-byte and a 64 MiB in-place SUM Allreduce (float64), raw and wrapped calls alternate
iteration by iteration, so drift on a shared machine hits both alike. Each sample is the
slowest rank's time for that call; the table gives medians and the wrapper's extra cost.
Also shows the scalar path (`allreduce_scalar`) against the raw 8-byte call.
"""

from __future__ import annotations

import argparse
import statistics
from time import perf_counter

import numpy as np
from mpi4py import MPI

from mpihybrid.comm import Comm


def timed(fn) -> float:
    t = perf_counter()
    fn()
    return perf_counter() - t


def compare(comm: MPI.Comm, wrapped: Comm, nbytes: int, iters: int, warmup: int) -> dict[str, float]:
    buf = np.ones(nbytes // 8, dtype=np.float64)
    variants = {
        "raw": lambda: comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM),
        "wrapper": lambda: wrapped.Allreduce(buf),
    }
    if nbytes == 8:
        variants["scalar"] = lambda: wrapped.allreduce_scalar(1.0)
    samples = {name: np.zeros(iters) for name in variants}
    for i in range(-warmup, iters):
        for name, fn in variants.items():
            comm.Barrier()
            t = timed(fn)
            if i >= 0:
                samples[name][i] = t
            buf[:] = 1.0  # keep values bounded (outside the timed call)
    for s in samples.values():
        comm.Allreduce(MPI.IN_PLACE, s, MPI.MAX)
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small-iters", type=int, default=20000)
    p.add_argument("--large-iters", type=int, default=30)
    args = p.parse_args()
    comm = MPI.COMM_WORLD
    wrapped = Comm(comm)
    small = compare(comm, wrapped, 8, args.small_iters, warmup=500)
    large = compare(comm, wrapped, 64 << 20, args.large_iters, warmup=3)
    if comm.rank == 0:
        print(f"Allreduce SUM in place, {comm.size} ranks, {MPI.Get_library_version().splitlines()[0].strip()}")
        print(f"medians of the slowest rank per call; {args.small_iters} / {args.large_iters} iterations\n")
        print("| message | raw mpi4py | mpihybrid.comm | extra | limit |")
        print("|---|---|---|---|---|")
        extra_small = (small["wrapper"] - small["raw"]) * 1e6
        print(
            f"| 8 B | {small['raw'] * 1e6:.2f} us | {small['wrapper'] * 1e6:.2f} us | {extra_small:+.2f} us | <= 2 us |"
        )
        print(
            f"| 8 B, allreduce_scalar | {small['raw'] * 1e6:.2f} us | {small['scalar'] * 1e6:.2f} us | "
            f"{(small['scalar'] - small['raw']) * 1e6:+.2f} us | <= 2 us |"
        )
        ratio = large["wrapper"] / large["raw"]
        print(
            f"| 64 MiB | {large['raw'] * 1e3:.2f} ms | {large['wrapper'] * 1e3:.2f} ms | "
            f"{(ratio - 1) * 100:+.2f} % | <= 5 % |"
        )


if __name__ == "__main__":
    main()
