"""Raw mpi4py versus the mpihybrid.comm wrappers, side by side in one run; with ``--device cuda``,
a 64 MiB Allreduce of a CUDA tensor through host staging versus handed to a CUDA-aware MPI.

    mpiexec -n 2 python bench/collectives.py [--small-iters 20000] [--large-iters 30]
    mpiexec -n 2 python bench/collectives.py --device cuda [--large-iters 30]

CPU: for an 8-byte and a 64 MiB in-place SUM Allreduce (float64), raw and wrapped calls
alternate iteration by iteration, so drift on a shared machine hits both alike. Each sample is
the slowest rank's time for that call; the table gives medians and the wrapper's extra cost.
Also shows the scalar path (`allreduce_scalar`) against the raw 8-byte call.

CUDA: the same 64 MiB in place, interleaved: raw mpi4py on a host numpy array (what MPI alone
costs), the wrapper staging a CUDA tensor through its pinned host buffers, and the wrapper
handing the CUDA tensor to MPI directly (only where the MPI is CUDA-aware, or
MPIHYBRID_COMM_PATH=direct vouches for it). Ranks share GPUs if there are fewer than ranks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from time import perf_counter

import numpy as np
import torch
from mpi4py import MPI

from mpihybrid.comm import PATH_ENV, Comm, cuda_aware_mpi
from mpihybrid.config import DeviceConfig
from mpihybrid.device import select_device

LARGE = 64 << 20


def timed(fn) -> float:
    t = perf_counter()
    fn()
    return perf_counter() - t


def medians(
    comm: MPI.Comm, variants: dict[str, Callable[[], object]], iters: int, warmup: int, reset: Callable[[], object]
) -> dict[str, float]:
    """Run the variants interleaved; per variant, the median over iterations of the slowest rank."""
    samples = {name: np.zeros(iters) for name in variants}
    for i in range(-warmup, iters):
        for name, fn in variants.items():
            comm.Barrier()
            t = timed(fn)
            if i >= 0:
                samples[name][i] = t
            reset()  # keep values bounded (outside the timed call)
    for s in samples.values():
        comm.Allreduce(MPI.IN_PLACE, s, MPI.MAX)
    return {name: statistics.median(s) for name, s in samples.items()}


def compare(comm: MPI.Comm, wrapped: Comm, nbytes: int, iters: int, warmup: int) -> dict[str, float]:
    buf = np.ones(nbytes // 8, dtype=np.float64)
    variants = {
        "raw": lambda: comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM),
        "wrapper": lambda: wrapped.Allreduce(buf),
    }
    if nbytes == 8:
        variants["scalar"] = lambda: wrapped.allreduce_scalar(1.0)
    return medians(comm, variants, iters, warmup, reset=lambda: buf.fill(1.0))


def library(comm: MPI.Comm) -> str:
    return f"{comm.size} ranks, {MPI.Get_library_version().splitlines()[0].strip()}"


def cpu_table(comm: MPI.Comm, args: argparse.Namespace) -> None:
    wrapped = Comm(comm)
    small = compare(comm, wrapped, 8, args.small_iters, warmup=500)
    large = compare(comm, wrapped, LARGE, args.large_iters, warmup=3)
    if comm.rank == 0:
        print(f"Allreduce SUM in place, {library(comm)}")
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


def cuda_table(comm: MPI.Comm, args: argparse.Namespace) -> None:
    device = select_device(Comm(comm), DeviceConfig(type="cuda", share=True))
    host = np.ones(LARGE // 8, dtype=np.float64)
    tensor = torch.ones(LARGE // 8, dtype=torch.float64, device=device)
    staged, direct = Comm(comm, staged=frozenset({"cuda"})), Comm(comm, staged=frozenset())
    variants = {"host": lambda: comm.Allreduce(MPI.IN_PLACE, host, MPI.SUM), "staged": lambda: staged.Allreduce(tensor)}
    aware = cuda_aware_mpi()
    if aware or os.environ.get(PATH_ENV) == "direct":
        variants["direct"] = lambda: direct.Allreduce(tensor)

    def reset() -> None:
        host.fill(1.0)
        tensor.fill_(1.0)
        torch.cuda.synchronize(device)

    t = medians(comm, variants, args.large_iters, warmup=3, reset=reset)
    if comm.rank != 0:
        return
    gpus = torch.cuda.device_count()
    print(f"64 MiB Allreduce SUM in place (float64), {library(comm)}; MPI CUDA-aware: {aware}")
    print(f"{torch.cuda.get_device_name(device)}, {gpus} visible per node; medians of the slowest rank per call\n")
    print("| path | time | vs host numpy |")
    print("|---|---|---|")
    for name, label in (("host", "raw mpi4py, host numpy"), ("staged", "CUDA tensor, host-staged")):
        print(f"| {label} | {t[name] * 1e3:.2f} ms | {t[name] / t['host']:.2f}x |")
    if "direct" in t:
        print(f"| CUDA tensor, direct | {t['direct'] * 1e3:.2f} ms | {t['direct'] / t['host']:.2f}x |")
        print(f"\nstaging overhead over direct: {(t['staged'] / t['direct'] - 1) * 100:+.1f} %")
    else:
        print(f"| CUDA tensor, direct | n/a: the MPI library is not CUDA-aware ({PATH_ENV}=direct to force) | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--small-iters", type=int, default=20000)
    p.add_argument("--large-iters", type=int, default=30)
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        if MPI.COMM_WORLD.rank == 0:
            print(f"bench/collectives.py: --device cuda, but torch {torch.__version__} finds no CUDA device")
        sys.exit(2)
    (cuda_table if args.device == "cuda" else cpu_table)(MPI.COMM_WORLD, args)


if __name__ == "__main__":
    main()
