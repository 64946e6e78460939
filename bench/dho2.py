"""FOSI and DHO2 against their claims (issue 5), measured side by side.

    .venv/bin/python bench/dho2.py [--out bench/results/dho2] [--quick]

Writes every run's results file under --out and a markdown table to --out/README.md:
1. Lanczos top-k eigenvalues of the digits-MLP Hessian (n = 2,410) against the exact Hessian;
2. sharded Lanczos at 1, 2 and 4 ranks against the serial result (float64);
3. curvature + optimizer bytes per rank for P ∈ {1, 2, 4, 8} (dho2 sync), fitted to a + b/P;
4. overlap: the update rank's step time while the curvature rank computes, against no curvature;
5. time (and steps) to dp-adam's best smoothed training loss (lr tuned over a grid): FOSI's
   settings, DHO2 sync and overlap with Lanczos or warm subspace iteration, on 2 ranks, per
   seed (``--seeds``, raw numbers in --out/speed.json), digits MLP, MNIST-1D CNN and a rotated
   ill-conditioned logistic regression, with the HVP cost in gradient steps;
6. the FOSI step (six passes over V) against a five-pass form.

Part 2 runs this file itself under mpiexec (``--sharded-worker``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tomllib
import torch
from _launch import BIN, REPO, run_job, write_report

JOBS = REPO / "jobs"
SMOOTH = 50  # steps in the moving average of the mini-batch training loss


def digits_hvp(seed: int = 0):
    """The digits MLP 64-32-10 in float64 at its initialisation, its loss on 512 samples and an HVP."""
    from mpihybrid.config import COMMON_SECTIONS, build_config
    from mpihybrid.data import load_dataset
    from mpihybrid.models import FlatModel, build_model
    from mpihybrid.solvers.hvp import hvp_function

    cfg = build_config({"seed": seed, "model": {"hidden": [32]}}, COMMON_SECTIONS)
    data = load_dataset(cfg.data, seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed).double()
    flat = FlatModel(model)
    x, y = torch.from_numpy(data.x_train[:512]).double(), torch.from_numpy(data.y_train[:512])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return flat.loss(theta, x, y, 1e-4)

    return loss, flat.initial(), hvp_function(loss)


def exact_vs_lanczos(k: int = 10) -> list[str]:
    from mpihybrid.solvers.lanczos import lanczos

    loss, theta, hvp = digits_hvp()
    t = time.perf_counter()
    H = torch.autograd.functional.hessian(loss, theta)
    exact = np.linalg.eigvalsh(H.numpy())[-k:]
    t_exact = time.perf_counter() - t
    lines = [
        "",
        f"## 1. Lanczos vs the exact Hessian (digits MLP, n = {theta.numel():,}, float64, 512 samples)",
        "",
        f"Exact: `torch.autograd.functional.hessian` + `eigh` in {t_exact:.1f} s. Top-{k} eigenvalues "
        f"{np.array2string(exact[::-1], precision=4)}.",
        "",
        "| Lanczos steps m | time | max rel. error of the top-10 | of the top-1 |",
        "|---|---|---|---|",
    ]
    for m in (40, 80, 120):
        t = time.perf_counter()
        r = lanczos(lambda x: hvp(theta, torch.from_numpy(x)).numpy(), theta.numel(), m, k, seed=0)
        dt = time.perf_counter() - t
        err = np.abs(r.values - exact) / np.abs(exact)
        lines.append(f"| {m} | {dt:.2f} s | **{err.max():.1e}** | {err[-1]:.1e} |")
    return lines


def sharded_worker(out: Path) -> None:
    """Under mpiexec: the same Lanczos sharded over COMM_WORLD; rank 0 writes values and vectors."""
    from mpi4py import MPI

    from mpihybrid.blocks import blocks
    from mpihybrid.comm import Comm
    from mpihybrid.solvers.lanczos import lanczos

    comm = Comm(MPI.COMM_WORLD)
    loss, theta, hvp = digits_hvp()
    split = blocks(theta.numel(), comm.size)
    counts = split.counts
    r = lanczos(
        lambda x: hvp(theta, torch.from_numpy(x)).numpy()[split.slice(comm.rank)],
        theta.numel(),
        40,
        10,
        seed=0,
        comm=comm,
    )
    full = np.empty((theta.numel(), 10)) if comm.rank == 0 else None
    comm.Gatherv(np.ascontiguousarray(r.vectors.T).reshape(-1), full, [c * 10 for c in counts])
    if comm.rank == 0:
        np.savez(out, values=r.values, vectors=full.T)


def sharded(out: Path) -> list[str]:
    lines = [
        "",
        "## 2. Sharded Lanczos vs serial (digits-MLP HVP, float64, m = 40, k = 10)",
        "",
        "| ranks | max rel. error of eigenvalues | max abs. error of Ritz vectors | wall time (incl. start-up) |",
        "|---|---|---|---|",
    ]
    got = {}
    for ranks in (1, 2, 4):
        path = out / f"sharded-{ranks}.npz"
        t = time.perf_counter()
        subprocess.run(
            [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, __file__, "--sharded-worker", str(path)],
            check=True,
            timeout=600,
        )
        got[ranks] = (np.load(path), time.perf_counter() - t)
    ref = got[1][0]
    for ranks, (r, dt) in got.items():
        ev = np.abs(r["values"] - ref["values"]).max() / np.abs(ref["values"]).max()
        vec = np.abs(np.abs(r["vectors"]) - np.abs(ref["vectors"])).max()
        lines.append(f"| {ranks} | **{ev:.1e}** | {vec:.1e} | {dt:.1f} s |")
    return lines


def memory(out: Path, quick: bool) -> list[str]:
    lines = [
        "",
        "## 3. Curvature + optimizer bytes per rank (dho2 sync, digits MLP 64-256-10, n = 19,210, k = 10, m = 40)",
        "",
        "Exact bytes of the persistent tensors on each rank (`/memory/curvature_bytes + optimizer_bytes`, max over "
        "ranks): eigenvector block, eigenvalues, VVᵀ, the rank's block of the Lanczos basis and T, Adam moments, "
        "FOSI momentum, ADMM dual and anchor. Peak RSS (whole process, includes torch) is shown beside.",
        "",
        "| P | curvature bytes | optimizer bytes | total | total / total(P=1) | peak RSS (max rank) |",
        "|---|---|---|---|---|---|",
    ]
    totals = {}
    for P in (1, 2) if quick else (1, 2, 4, 8):
        r = run_job(
            P,
            "dho2",
            JOBS / "dho2" / "digits.toml",
            out / f"memory-{P}.h5",
            "dho2.mode='sync'",
            "model.hidden=[256]",
            "train.steps=12",
            "fosi.refresh_every=10",
            "train.eval_every=12",
            "admm.enabled=true",
            "train.batch_size=64",
            "fosi.curvature_batch=64",
        )
        curv, opt, rss = (r["memory"][k] for k in ("curvature_bytes", "optimizer_bytes", "peak_rss_bytes"))
        total = (curv + opt).max()
        totals[P] = total
        ratio = total / totals[1]
        lines.append(
            f"| {P} | {curv.max():,} | {opt.max():,} | {total:,} | {ratio:.3f} | {rss.max() / 2**20:.0f} MiB |"
        )
    Ps = np.array(sorted(totals), dtype=float)
    y = np.array([totals[int(p)] for p in Ps], dtype=float)
    X = np.stack([np.ones_like(Ps), 1 / Ps], 1)
    (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
    r2 = 1 - np.sum((X @ [a, b] - y) ** 2) / np.sum((y - y.mean()) ** 2)
    lines += [
        "",
        f"Fit M(P) = a + b/P: a = {a:,.0f} B, b = {b:,.0f} B, **R² = {r2:.6f}**; "
        f"M({int(Ps[-1])}) / M(1) = **{y[-1] / y[0]:.3f}**.",
    ]
    return lines


def overlap(out: Path, quick: bool) -> list[str]:
    steps = 600 if quick else 1000
    lines = [
        "",
        "## 4. Overlap: U = 1 update rank, C = 1 curvature rank (digits MLP, k = 10, m = 40, T = 100, 2 ranks)",
        "",
        "'No curvature at all' is the same job with no refresh inside the run: U steps plain Adam. 'C idle' are the "
        "steps of the curvature run after the first install while C is not computing: U steps FOSI with the same "
        "eigenpairs, so 'while C computes / C idle' isolates what the concurrent curvature computation costs U; "
        "'while C computes / no curvature at all' also contains FOSI's own projections (6 passes over the r×n "
        "eigenvector block per step).",
        "",
        "| MLP | U step: no curvature at all | C idle (FOSI steps) | while C computes | ratio vs C idle | "
        "ratio vs no curvature (target ≤ 1.15) | steps while C computes | staleness (steps) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for hidden in (64, 512):
        common = [
            f"train.steps={steps}",
            "train.eval_every=100000",
            "dho2.mode='overlap'",
            "dho2.curvature_ranks=1",
            f"model.hidden=[{hidden}]",
            "fosi.k=10",
            "fosi.curvature_batch=256",
            "fosi.refresh_every=100",
        ]
        with_c = run_job(2, "dho2", JOBS / "dho2" / "digits.toml", out / f"overlap-on-{hidden}.h5", *common)
        without = run_job(
            2,
            "dho2",
            JOBS / "dho2" / "digits.toml",
            out / f"overlap-off-{hidden}.h5",
            *common,
            f"fosi.warmup={10 * steps}",
        )
        m = with_c["metrics"]
        is_busy = m["curvature_busy"] > 0
        busy = m["step_seconds"][is_busy]
        installed = np.flatnonzero(~np.isnan(m.get("curvature_staleness", np.full(len(is_busy), np.nan))))
        base = without["metrics"]["step_seconds"]
        if not len(installed):
            lines.append(
                f"| 64-{hidden}-10 | {statistics.median(base) * 1e3:.3f} ms | - | - | - | - | {len(busy)} of "
                f"{steps} | no curvature arrived within the run |"
            )
            continue
        idle = m["step_seconds"][installed[0] :][~is_busy[installed[0] :]]
        stale = m["curvature_staleness"][installed]
        med = {k: statistics.median(v) for k, v in (("base", base), ("idle", idle), ("busy", busy))}
        lines.append(
            f"| 64-{hidden}-10 | {med['base'] * 1e3:.3f} ms | {med['idle'] * 1e3:.3f} ms | "
            f"{med['busy'] * 1e3:.3f} ms | **{med['busy'] / med['idle']:.3f}** | **{med['busy'] / med['base']:.3f}** | "
            f"{len(busy)} of {steps} | {stale.astype(int).tolist()} |"
        )
    return lines


def smoothed(loss: np.ndarray) -> np.ndarray:
    kernel = np.ones(SMOOTH) / SMOOTH
    out = np.convolve(loss, kernel, mode="full")[: len(loss)]
    out[: SMOOTH - 1] = np.inf  # no estimate before a full window
    return out


def ill_conditioned_design(path: Path, kappa: float = 1e4, top: int = 1, seed: int = 0) -> Path:
    """A seeded 10-class linear problem whose 64 features have covariance eigenvalues κ (``top``
    directions) and 1 (the rest), rotated at random so no coordinate lines up with them: the
    case FOSI's paper argues for (Adam's diagonal scaling cannot undo a rotated ill-conditioning)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((4000, 64))
    y = np.argmax(z @ rng.standard_normal((64, 10)) + 0.5 * rng.standard_normal((4000, 10)), 1)
    scale = np.ones(64)
    scale[:top] = np.sqrt(kappa)
    x = ((z * scale) @ np.linalg.qr(rng.standard_normal((64, 64)))[0].T).astype(np.float32)
    np.savez(path, x_train=x[:3200], y_train=y[:3200], x_test=x[3200:], y_test=y[3200:])
    return path


def hvp_cost(job: Path, overrides: dict) -> tuple[float, float]:
    """One HVP on the curvature batch, alone and per vector of a vmapped block of k, in units of
    one training gradient (forward + backward on a training batch), in this process."""
    import tomllib
    from torch.func import vmap

    from mpihybrid.admm.config import DHO2_SECTIONS
    from mpihybrid.admm.update import FOSIWorkload
    from mpihybrid.config import COMMON_SECTIONS, build_config
    from mpihybrid.models import FlatModel, l2_loss
    from mpihybrid.solvers.hvp import hvp_function

    raw = tomllib.loads(job.read_text())
    for key, value in overrides.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    cfg = build_config(raw, {**COMMON_SECTIONS, **DHO2_SECTIONS})
    work = FOSIWorkload(cfg, torch.device("cpu"))
    b, c = cfg.train.batch_size, cfg.fosi.curvature_batch or cfg.train.batch_size
    x, y = work.x_train, work.y_train
    flat, theta = FlatModel(work.model), work.theta.detach().clone()

    def gradient() -> None:
        work.model.zero_grad()
        l2_loss(work.model(x[:b]), y[:b], cfg.train.weight_decay, work.model.parameters()).backward()

    hvp = hvp_function(lambda t: flat.loss(t, x[:c], y[:c], cfg.train.weight_decay))
    vs = torch.randn(cfg.fosi.k, work.n)
    block = vmap(lambda v: hvp(theta, v))

    def timed(fn, repeats: int) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    g = timed(gradient, 30)
    return timed(lambda: hvp(theta, vs[0]), 10) / g, timed(lambda: block(vs), 5) / cfg.fosi.k / g


def first_hit(run: dict, target: float) -> tuple[float, int, float] | None:
    """(wall time, step, test accuracy at the first evaluation from then on) where the smoothed
    training loss first reaches ``target``."""
    m = run["metrics"]
    hit = np.flatnonzero(smoothed(m["train_loss"]) <= target)
    if not len(hit):
        return None
    i = int(hit[0])
    acc = m["test_accuracy"][i:]
    acc = acc[~np.isnan(acc)]
    return float(m["wall_time"][i]), i + 1, float(acc[0]) if len(acc) else float("nan")


def speed_workloads(out: Path, quick: bool) -> dict[str, tuple[Path, int, list[str]]]:
    """Name -> (DHO2 job, steps, overrides for every method)."""
    design = ill_conditioned_design(out / "ill-conditioned.npz")
    return {
        "digits MLP 64-32-10": (JOBS / "dho2" / "digits.toml", 300 if quick else 1000, []),
        "MNIST-1D CNN": (JOBS / "dho2" / "mnist1d.toml", 300 if quick else 1000, []),
        "logreg, rotated κ = 1e4": (JOBS / "dho2" / "logreg.toml", 300 if quick else 1000, [f"data.path='{design}'"]),
    }


LANCZOS = ["fosi.solver='lanczos'", "fosi.warm_start=false"]
SUBSPACE = ["fosi.solver='subspace'", "fosi.warm_start=true", "fosi.warm_subspace_sweeps=2"]
SPEED_METHODS = {  # label -> (algorithm, overrides on the DHO2 job); dp-adam's lr is tuned apart
    "FOSI sync (k=10, T=800, α=0.01)": (
        "dho2",
        ["dho2.mode='sync'", "fosi.k=10", "fosi.refresh_every=800", "fosi.alpha=0.01", *LANCZOS],
    ),
    "DHO2 sync, Lanczos": ("dho2", ["dho2.mode='sync'", *LANCZOS]),
    "DHO2 sync, subspace (warm)": ("dho2", ["dho2.mode='sync'", *SUBSPACE]),
    "DHO2 overlap (U=1, C=1), Lanczos": ("dho2", ["dho2.mode='overlap'", "dho2.curvature_ranks=1", *LANCZOS]),
    "DHO2 overlap (U=1, C=1), subspace (warm)": (
        "dho2",
        ["dho2.mode='overlap'", "dho2.curvature_ranks=1", *SUBSPACE],
    ),
}
LR_GRID = (1 / 3, 1.0, 3.0, 10.0)  # dp-adam's lr: these multiples of the job's train.lr, tuned on seed 0


def load() -> float:
    return os.getloadavg()[0]


def speed_table(raw: dict) -> list[str]:
    """Section 5 from the raw per-seed numbers of speed.json."""
    ranks = raw["ranks"]
    lines = [
        "",
        f"## 5. Time to dp-adam's best smoothed training loss ({ranks} ranks)",
        "",
        f"Target: the best moving average (over {SMOOTH} steps) of dp-adam's mini-batch training loss in the "
        "budget, with dp-adam's lr tuned on seed 0 over "
        f"{', '.join(f'{f:g}' for f in LR_GRID)} × the job's lr (the lowest best smoothed loss wins; its seed-0 "
        "run is that seed's baseline; it is then used, as the base optimizer's lr too, "
        "for every seed). Each seed runs dp-adam and every method on the same data, model, ranks and batch per "
        "step; speed-up = dp-adam's wall time to its best / the method's wall time to the same loss (> 1: faster; "
        "0 when never reached). Steps ratio = dp-adam's steps / the method's. Accuracy: test accuracy at the first "
        "evaluation at or after the hit. HVP cost: one HVP on the curvature batch in units of one training "
        "gradient, single and per vector of a vmapped block of k (measured in-process, 1 thread). Load: the "
        "1-minute load average before each run (the machine is shared), median [min, max]. Raw numbers per seed: "
        "`speed.json`.",
        "",
        "| workload | method | seeds | speed-up (time) median [min, max] | steps ratio median | reached | "
        "accuracy at target | HVP cost (single / vmapped per vector) | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in raw["workloads"].items():
        rows = list(entry["seeds"].values())
        base_acc = statistics.median(r["dp-adam"]["accuracy"] for r in rows)
        loads = [r["dp-adam"]["load"] for r in rows]
        grid = ", ".join(f"{float(k):g}: {v:.4f}" for k, v in entry["lr_grid"].items())
        lines.append(
            f"| {name} ({entry['steps']} steps) | dp-adam, lr {entry['lr']:g} (grid, best smoothed loss: {grid}) | "
            f"{len(rows)} | 1 | 1 | {len(rows)}/{len(rows)} | {base_acc:.3f} | — | "
            f"{statistics.median(loads):.1f} [{min(loads):.1f}, {max(loads):.1f}] |"
        )
        hvp = entry["hvp_cost"]
        for label in SPEED_METHODS:
            cells = [r[label] for r in rows]
            speed = [c["speedup"] for c in cells]
            reached = [c for c in cells if "time" in c]
            acc = f"{statistics.median(c['accuracy'] for c in reached):.3f}" if reached else "—"
            ld = [c["load"] for c in cells]
            lines.append(
                f"| {name} | {label} | {len(rows)} | **{statistics.median(speed):.2f}×** [{min(speed):.2f}, "
                f"{max(speed):.2f}] | {statistics.median(c['steps_ratio'] for c in cells):.2f}× | "
                f"{len(reached)}/{len(cells)} | {acc} | {hvp['single']:.1f} / {hvp['vmapped_per_vector']:.1f} | "
                f"{statistics.median(ld):.1f} [{min(ld):.1f}, {max(ld):.1f}] |"
            )
    return lines


def time_to_target(out: Path, quick: bool, seeds: int, only: list[str], first_seed: int = 0) -> list[str]:
    """Runs the workloads whose name contains one of ``only`` (all when empty), merges their
    per-seed numbers into out/speed.json and renders the table from all of it. With
    ``first_seed`` > 0, seeds are added to a measured workload (its lr is not tuned again)."""
    ranks = 2
    path = out / "speed.json"
    raw: dict = json.loads(path.read_text()) if path.exists() else {}
    raw.update(machine="2-core shared CPU, no GPU", ranks=ranks, smooth=SMOOTH)
    raw.setdefault("workloads", {})
    for name, (job, steps, extra) in speed_workloads(out, quick).items():
        if only and not any(o in name for o in only):
            continue
        common = [f"train.steps={steps}", "train.eval_every=100", *extra]
        base_job = out / f"adam-{job.stem}.toml"  # the same config without FOSI's sections
        base_job.write_text(job.read_text().split("\n[fosi]")[0])
        entry = raw["workloads"].get(name)
        if first_seed and entry:  # more seeds for a measured workload: keep its tuned lr and HVP cost
            lr, per_seed = entry["lr"], entry["seeds"]
        else:
            lr0 = tomllib.loads(job.read_text())["train"]["lr"]
            grid, grid_runs = {}, {}
            for factor in LR_GRID:
                lr = lr0 * factor
                h5 = out / "speed" / f"grid-{job.stem}-{lr:g}.h5"
                grid_runs[lr] = run_job(
                    ranks, "dp-adam", base_job, h5, *common, "seed=0", f"train.lr={lr}", timeout=600
                )
                grid[lr] = float(smoothed(grid_runs[lr]["metrics"]["train_loss"]).min())
            lr = min(grid, key=grid.get)
            entry = raw["workloads"][name] = {
                "job": str(job.relative_to(REPO)),
                "steps": steps,
                "lr_grid": grid,
                "lr": lr,
            }
            single, vmapped = hvp_cost(job, dict(o.split("=", 1) for o in extra))
            entry["hvp_cost"] = {"single": single, "vmapped_per_vector": vmapped}
            per_seed = entry["seeds"] = {}
        for seed in range(first_seed, first_seed + seeds):
            row = per_seed[str(seed)] = {}
            tag = f"{job.stem}-s{seed}"
            before = load()
            b = (
                grid_runs[lr]
                if seed == 0
                else run_job(
                    ranks,
                    "dp-adam",
                    base_job,
                    out / "speed" / f"adam-{tag}.h5",
                    *common,
                    f"seed={seed}",
                    f"train.lr={lr}",
                )
            )
            sm = smoothed(b["metrics"]["train_loss"])
            best = int(np.argmin(sm))
            target = float(sm[best])
            t, _, acc = first_hit(b, target)
            row["dp-adam"] = {"target": target, "time": t, "step": best + 1, "accuracy": acc, "load": before}
            for label, (algo, over) in SPEED_METHODS.items():
                before = load()
                key = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
                o = run_job(
                    ranks,
                    algo,
                    job,
                    out / "speed" / f"{key}-{tag}.h5",
                    *common,
                    f"seed={seed}",
                    f"train.lr={lr}",
                    *over,
                )
                hit = first_hit(o, target)
                row[label] = {"load": before, "best": float(smoothed(o["metrics"]["train_loss"]).min())}
                if hit:
                    row[label].update(
                        time=hit[0], step=hit[1], accuracy=hit[2], speedup=t / hit[0], steps_ratio=(best + 1) / hit[1]
                    )
                else:
                    row[label].update(speedup=0.0, steps_ratio=0.0)
        path.write_text(json.dumps(raw, indent=1))
    return speed_table(raw)


def five_pass_step(core, g: torch.Tensor) -> None:
    """The FOSI step (Adam base) with u's projection and the Newton direction in one Vᵀ product:
    θ_before + c·u − Vᵀ(c·Vu + α·η ⊙ Vm), five passes over V where `FOSICore.step` makes six.
    Measured against it in `step_passes`; not adopted (no measurable gain, other rounding)."""
    theta, V, beta = core.theta, core.V, core.decay
    p, v_old = V @ g, V @ core.velocity
    g1 = V.T @ p
    core.velocity.mul_(beta).add_(g1, alpha=1 - beta)
    vm = (1 - beta) * (core.gram @ p) + beta * v_old
    old = theta.detach().clone()
    theta.grad = g - g1
    core.base.step()
    u = theta.detach() - old
    theta.copy_(old.add_(u, alpha=core.c).sub_(V.T @ (core.c * (V @ u) + core.alpha * (core.eta * vm))))


def step_passes(out: Path, quick: bool) -> list[str]:
    from mpihybrid.solvers.fosi import FOSICore

    lines = [
        "",
        "## 6. FOSI step: six passes over V (`FOSICore.step`) against five (Adam base, k = 10, 1 process, 1 thread)",
        "",
        "Two FOSICores with the same eigenpairs and gradients, stepped alternately (so both see the same load); "
        "median of 200 steps after 20 warm-up steps. Load: the "
        "1-minute load average before the measurement.",
        "",
        "| n | six passes | five passes | speed-up | load |",
        "|---|---|---|---|---|",
    ]
    torch.set_num_threads(1)
    for n in (2_410, 19_210) if quick else (2_410, 19_210, 200_000):
        rng = np.random.default_rng(0)
        vectors = np.linalg.qr(rng.standard_normal((n, 10)))[0].T
        cores = {}
        for name in ("six", "five"):
            cores[name] = FOSICore(torch.zeros(n), k=10)
            cores[name].set_curvature(np.linspace(1, 10, 10), vectors)
        steps = {"six": cores["six"].step, "five": functools.partial(five_pass_step, cores["five"])}
        samples = {name: [] for name in steps}
        with torch.no_grad():
            for i, g in enumerate(torch.randn(220, n)):
                for name, step in steps.items():  # interleaved, so both see the same load
                    t = time.perf_counter()
                    step(g)
                    if i >= 20:
                        samples[name].append(time.perf_counter() - t)
        times = {name: statistics.median(v) for name, v in samples.items()}
        lines.append(
            f"| {n:,} | {times['six'] * 1e6:.0f} µs | {times['five'] * 1e6:.0f} µs | "
            f"**{times['six'] / times['five']:.2f}×** | {load():.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dho2")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (a smoke test)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the speed section")
    parser.add_argument("--first-seed", type=int, default=0, help="speed section: add seeds from this one on")
    parser.add_argument("--workloads", nargs="*", default=[], help="speed section: only workloads naming these")
    parser.add_argument("--only", nargs="*", default=["exact", "sharded", "memory", "overlap", "speed", "step"])
    parser.add_argument("--sharded-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sharded_worker:
        sharded_worker(args.sharded_worker)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    parts = {
        "exact": exact_vs_lanczos,
        "sharded": lambda: sharded(args.out),
        "memory": lambda: memory(args.out, args.quick),
        "overlap": lambda: overlap(args.out, args.quick),
        "speed": lambda: time_to_target(args.out, args.quick, args.seeds, args.workloads, args.first_seed),
        "step": lambda: step_passes(args.out, args.quick),
    }
    write_report(
        args.out,
        "FOSI / DHO2 benchmark",
        "`.venv/bin/python bench/dho2.py` on a 2-core machine (4 and 8 ranks oversubscribed). Every number below was "
        "measured by that command (a section's runs together; `--only` reruns single sections).",
        parts,
        args.only,
    )


if __name__ == "__main__":
    main()
