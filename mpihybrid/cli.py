"""The `mpihybrid` command: run an algorithm, describe the MPI job, analyse results files.

    mpiexec -n N mpihybrid run ALGO --config FILE.toml [--set k=v ...] --out RESULTS.h5
                                    [--checkpoint DIR] [--resume] [--overwrite] [--expect-ranks N]
                                    [--log-dir DIR]
    mpiexec -n N mpihybrid info [--expect-ranks N] [--device auto|cpu|cuda]
    mpihybrid analyze RESULTS.h5 [...] [--format markdown|csv] [--target M>=V] [--baseline F]
                      [--plots DIR] [--report DIR]

Exit codes: 0 done, 1 a rank failed (the job was aborted), 2 bad input (config, checkpoint,
launcher), 3 the run diverged (the last good checkpoint is kept), 75 stopped by SIGUSR1 or SIGTERM
after writing a checkpoint (run it again with --resume to continue).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from mpi4py import MPI

from mpihybrid import __version__
from mpihybrid.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError


def _parser() -> argparse.ArgumentParser:
    from mpihybrid.algorithms import ALGORITHMS

    p = argparse.ArgumentParser(prog="mpihybrid", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"mpihybrid {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an algorithm as an MPI job")
    r.add_argument("algorithm", choices=sorted(ALGORITHMS))
    r.add_argument("--config", required=True, help="TOML config file")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=0.01 (repeatable)",
    )
    r.add_argument("--out", required=True, help="results file (HDF5), written by rank 0")
    r.add_argument("--checkpoint", help="checkpoint directory")
    r.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace the results file --out if it exists")
    r.add_argument("--expect-ranks", type=int, help="fail unless the job has this many ranks")
    r.add_argument("--log-dir", help="also write each rank's output to LOG_DIR/rank-<r>.log")
    i = sub.add_parser("info", help="print versions, the MPI library, and each rank's host, device and comm path")
    i.add_argument("--expect-ranks", type=int, help="fail unless the job has this many ranks")
    i.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="show the devices a run with this device.type would use (default: auto)",
    )
    a = sub.add_parser("analyze", help="tabulate results files")
    a.add_argument("files", nargs="+")
    a.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    a.add_argument(
        "--target",
        metavar="METRIC>=VALUE",
        help="report time, step and uplink bytes to reach it (e.g. test_accuracy>=0.9, train_loss<=0.05)",
    )
    a.add_argument("--baseline", metavar="FILE", help="results file the speed-ups are measured against")
    a.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNG plots (metric vs step and wall time, bytes, memory and speed-up vs ranks) into DIR",
    )
    a.add_argument("--report", metavar="DIR", help="write DIR/index.html: the tables and every plot on one page")
    return p


def _agree(comm: MPI.Comm, message: str | None) -> str | None:
    """After every rank validated on its own: the first rank's error, if any rank had one."""
    messages = comm.allgather(message)
    return next((m for m in messages if m), None)


def cmd_info(args: argparse.Namespace) -> int:
    from mpihybrid.comm import PATH_ENV, Comm, check_world_size, cuda_aware_mpi
    from mpihybrid.device import gather_views, plan

    world = Comm(MPI.COMM_WORLD)
    check_world_size(world.size, args.expect_ranks)
    views = gather_views(world, args.device)
    try:
        devices = plan(views, args.device, share=True)  # shared GPUs are shown, not refused
    except UsageError as exc:
        if world.rank == 0:
            print(f"mpihybrid: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    paths = world.mpi.gather(world.path(devices[world.rank].type), root=0)
    if world.rank != 0:
        return 0
    import h5py
    import mpi4py
    import numpy
    import torch

    print(
        f"mpihybrid {__version__}; python {platform.python_version()}; mpi4py {mpi4py.__version__}; "
        f"numpy {numpy.__version__}; torch {torch.__version__}; h5py {h5py.__version__} "
        f"(parallel HDF5: {h5py.get_config().mpi})"
    )
    library = MPI.Get_library_version().splitlines()[0].strip()
    print(f"MPI library: {library} (MPI {'.'.join(map(str, MPI.Get_version()))})")
    aware = {True: "yes", False: "no", None: "cannot be asked"}[cuda_aware_mpi()]
    print(f"MPI CUDA-aware: {aware}; {PATH_ENV}={os.environ.get(PATH_ENV, 'auto')}")
    print(f"world size: {world.size}; device.type = {args.device}")
    users: dict[tuple[int, str], list[int]] = {}
    for view, device in zip(views, devices):
        if device.type == "cuda":
            users.setdefault((view.node, view.ids[view.gpus.index(device.index)]), []).append(view.rank)
    for view, device, path in zip(views, devices, paths):
        where = "cpu" if path == "direct" else f"cpu, {path}"
        if device.type == "cuda":
            k = view.gpus.index(device.index)
            where = f"{device} {view.names[k]} ({view.ids[k]}), {path}"
            sharing = users[view.node, view.ids[k]]
            if len(sharing) > 1:
                where += f"; shared by ranks {', '.join(map(str, sharing))} (needs device.share = true)"
        print(f"rank {view.rank} of {world.size} on {view.host}: {where}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mpihybrid.interruption import Interruption

    # First of all (before torch is imported): from here on, a signal stops the run at a step
    # boundary instead of killing the rank (Slurm's warning can come while a requeued job starts).
    interruption = Interruption()
    interruption.install()

    from mpihybrid import algorithms
    from mpihybrid.comm import Comm, abort_on_error, check_world_size
    from mpihybrid.comm.failure import abort_job
    from mpihybrid.config import apply_overrides, build_config, read_toml
    from mpihybrid.device import device_for, select_device
    from mpihybrid.errors import ConfigError
    from mpihybrid.harness import FAULT_ENV, Diverged, Run, parse_fault
    from mpihybrid.io.checkpoint import latest_checkpoint, load_checkpoint

    world = Comm(MPI.COMM_WORLD)
    if args.log_dir:
        from mpihybrid.io.logs import tee_to_rank_log

        tee_to_rank_log(args.log_dir, world.rank)
    # Everything a user can get wrong is checked on every rank before any collective.
    message, config, resumed, algorithm, fault = None, None, None, None, None
    try:
        check_world_size(world.size, args.expect_ranks)
        fault = parse_fault(os.environ.get(FAULT_ENV, ""))
        algorithm = algorithms.load(args.algorithm)
        config = build_config(apply_overrides(read_toml(args.config), args.overrides), algorithms.sections(algorithm))
        algorithm.validate(config, world.size)
        if world.rank == 0 and Path(args.out).exists() and not (args.resume or args.overwrite):
            raise ConfigError("--out", f"'{args.out}' holds a previous run's results; pass --overwrite to replace it")
        if args.resume:
            if not args.checkpoint:
                raise ConfigError("--resume", "needs --checkpoint DIR")
            resumed = load_checkpoint(
                latest_checkpoint(args.checkpoint),
                rank=world.rank,
                world_size=world.size,
                algorithm=args.algorithm,
                config_hash=config.hash(),
            )
    except UsageError as exc:
        message = f"mpihybrid: error: {exc}"
    message = _agree(world.mpi, message)
    device = None
    if message is None:
        try:  # collective, and every rank decides alike: refuses a [device] the job cannot have, binds the GPU
            device = select_device(world, config.device)
            device = device_for(args.algorithm, algorithm.on_device, device, root=world.rank == 0)
        except UsageError as exc:
            message = f"mpihybrid: error: {exc}"
    if message:
        if world.rank == 0:
            print(message, file=sys.stderr, flush=True)
        return EXIT_USAGE

    run = Run(
        algorithm=args.algorithm,
        config=config,
        world=world,
        out=args.out,
        checkpoint_dir=args.checkpoint,
        resumed=resumed,
        device=device,
        fault=fault,
        interruption=interruption,
    )
    if resumed is not None:
        from mpihybrid.io.checkpoint import restore_global_rng

        restore_global_rng(resumed.state.local)
    try:
        with abort_on_error(MPI.COMM_WORLD):
            try:
                run.set_threads()
                algorithm.create(run).train()
                if run.interrupted:
                    return EXIT_INTERRUPTED
            except UsageError:
                raise
            except Diverged as exc:
                if world.rank == 0:
                    print(f"mpihybrid: {exc}", file=sys.stderr, flush=True)
                return EXIT_DIVERGED
            except BaseException as exc:
                run.results.write_failed(f"{type(exc).__name__}: {exc}")
                raise
    except UsageError as exc:  # found after start-up (e.g. data too small): still exit 2, one line
        abort_job(MPI.COMM_WORLD, f"mpihybrid: error: {exc}\n", EXIT_USAGE)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from mpihybrid.analysis import analyze

    return analyze(
        args.files, fmt=args.format, target=args.target, baseline=args.baseline, plots=args.plots, report=args.report
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "info": cmd_info, "analyze": cmd_analyze}[args.command](args)
    except UsageError as exc:
        print(f"mpihybrid: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
