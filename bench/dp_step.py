"""dp-adam's step at 1 rank against a plain single-process torch loop of the same model.

    .venv/bin/python bench/dp_step.py [--device cpu|cuda] [--steps 200] [--threads 1] [--out bench/results/dp_step]

Both run in this process (an MPI world of 1) on the same device, data, batch size and thread
count (``train.threads``, default 1: on a shared machine more threads mostly measure the
neighbours), their steps interleaved so that load drifts hit both. dp-adam's step is
`DataParallel.step`: derived batch indices, the forward/backward, the Allreduce of the flat
gradient, Adam, and the Allreduce of the loss. The plain loop indexes a fresh random batch,
runs forward/backward and Adam, and nothing else. The ratio (dp-adam / plain) is the cost of
what the harness adds to a step; it is given for the medians and for the fastest steps (the
least disturbed by other processes on a shared machine). Writes a table to --out/README.md, one section per device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _launch import REPO, write_report
from mpi4py import MPI

from mpihybrid.algorithms import load, sections
from mpihybrid.comm import Comm
from mpihybrid.config import apply_overrides, build_config, read_toml
from mpihybrid.data import load_dataset
from mpihybrid.dp import DataParallel
from mpihybrid.harness import Run
from mpihybrid.models import build_model, l2_loss

JOB = REPO / "jobs" / "dp-adam" / "digits.toml"
MODELS = {"[32]": "64-32-10", "[512, 512]": "64-512-512-10", "[2048, 2048]": "64-2048-2048-10"}  # hidden -> MLP


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    t = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t


def measure(
    hidden: str, device: torch.device, steps: int, threads: int, workdir: Path
) -> tuple[int, list[float], list[float], int]:
    """(parameters, dp-adam step times, plain step times, threads) over ``steps`` interleaved steps."""
    overrides = [f"model.hidden={hidden}", f"train.threads={threads}"]
    config = build_config(apply_overrides(read_toml(JOB), overrides), sections(load("dp-adam")))
    run = Run(
        algorithm="dp-adam",
        config=config,
        world=Comm(MPI.COMM_WORLD),
        out=workdir / "unused.h5",
        checkpoint_dir=None,
        resumed=None,
        device=device,
    )
    threads = run.set_threads()
    dp = DataParallel(run)

    data = load_dataset(config.data, config.seed)
    x, y = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device)
    model = build_model(config.model, data.input_shape, data.num_classes, config.seed).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    batch, t = config.train.batch_size, config.train

    def plain_step() -> None:
        idx = torch.randint(len(y), (batch,), device=device)
        opt.zero_grad(set_to_none=False)
        l2_loss(model(x[idx]), y[idx], t.weight_decay, model.parameters()).backward()
        opt.step()

    dp_times, plain_times = [], []
    for step in range(1, steps + 11):
        a, b = timed(lambda step=step: dp.step(step), device), timed(plain_step, device)
        if step > 10:  # warm-up: allocator, kernels, Adam's state
            dp_times.append(a)
            plain_times.append(b)
    params = sum(p.numel() for p in dp.params)
    return params, dp_times, plain_times, threads


def table(device: torch.device, steps: int, threads: int) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "2-core shared CPU (this VM)"
    section = 1 if device.type == "cpu" else 2
    lines = [
        "",
        f"## {section}. dp-adam step at 1 rank vs a plain torch loop, device {device.type}: {name}",
        "",
        f"Digits, batch 64, Adam, float32; {steps} interleaved steps after 10 warm-up steps. "
        f"Load average at the start: {os.getloadavg()[0]:.1f}.",
        "",
        "| model | parameters | threads | dp-adam step (median / fastest) | plain step (median / fastest) "
        "| ratio of medians | ratio of fastest |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for hidden, model in MODELS.items():
            params, dp, plain, used = measure(hidden, device, steps, threads, Path(tmp))
            med_dp, med_plain = statistics.median(dp), statistics.median(plain)
            lines.append(
                f"| MLP {model} | {params:,} | {used} | {med_dp * 1e3:.3f} / {min(dp) * 1e3:.3f} ms "
                f"| {med_plain * 1e3:.3f} / {min(plain) * 1e3:.3f} ms | **{med_dp / med_plain:.2f}×** "
                f"| **{min(dp) / min(plain):.2f}×** |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both loops")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dp_step")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    write_report(
        args.out,
        "dp-adam step vs a plain torch loop",
        "`.venv/bin/python bench/dp_step.py [--device cuda]`: every number below was measured by that command.",
        {args.device: lambda: table(device, args.steps, args.threads)},
        [args.device],
    )


if __name__ == "__main__":
    main()
