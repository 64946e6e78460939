"""DeComFL fine-tuning the OPT-125M architecture, per rank, on the CPU: `mpihybrid run decomfl`
itself with 1 and 4 virtual clients sampled on its rank, against the full-vector path it replaced.

    .venv/bin/python bench/decomfl_llm.py [--out bench/results/decomfl_llm] [--batch 32] [--threads 1]
                                          [--only decomfl-1 decomfl-4 flat-1 flat-4]

The model is OPT-125M's published architecture (OPTConfig: 12 layers, width 768, vocabulary
50,272, tied embeddings; d = 125,239,296) with random weights drawn here and saved with
save_pretrained (safetensors) beside a word-level tokenizer and a small SST-2 made on the spot
(tests/llm_fixtures.py): nothing is downloaded. Each case runs in its own process, one rank,
P = 5 forward differences, K = 1, ``--batch`` prompts a local step.

- ``decomfl-c``: `mpihybrid run decomfl` on one rank with c clients, all sampled every round,
  3 rounds. s/round is round 2's wall time (no evaluation in it); peak RSS is the results
  file's. "imports" is the peak RSS of a process that only imports what a rank imports (torch,
  transformers' OPT, mpi4py, mpihybrid's DeComFL): peak − imports is what the run adds.
- ``flat-c`` (the full-vector path DeComFL ran before the in-place kernels, still in
  `mpihybrid.solvers.zeroth_order`): a flat model per client (snapshot and momentum), the
  server's, and per step the local copy, P d-sized directions and x + μz, on the same model
  and prompts; s/round is c client steps plus the server's update.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests")]
P, MU, LR, SEED, ROUNDS = 5, 1e-3, 5e-6, 0, 3
# A process that imports what a rank imports before it builds anything, and prints its peak RSS.
IMPORTS = """import json, torch, mpi4py.MPI, mpihybrid.cli, mpihybrid.fl.decomfl
from transformers import OPTForCausalLM
with open("/proc/self/status") as f:
    print(json.dumps(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))))
"""


def peak() -> int:
    """Peak RSS of this process (VmHWM; ru_maxrss would start at the parent's)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def opt_125m():
    """OPT-125M's architecture with seeded random weights."""
    from transformers import OPTConfig, OPTForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    config = OPTConfig(
        vocab_size=50272,
        hidden_size=768,
        num_hidden_layers=12,
        ffn_dim=3072,
        num_attention_heads=12,
        max_position_embeddings=2048,
        word_embed_proj_dim=768,
    )
    torch.manual_seed(SEED)
    return OPTForCausalLM(config).eval()


def prepare(root: Path) -> tuple[Path, Path]:
    """model.path (OPT-125M's architecture, random, safetensors, a word-level tokenizer) and
    data.path (a small SST-2), made once under ``root``."""
    from llm_fixtures import make_tokenizer, write_sst2

    model, data = root / "opt-125m-random", root / "sst2"
    if not (model / "model.safetensors").exists():
        opt_125m().save_pretrained(model)
        make_tokenizer(model)
    write_sst2(data, n_train=64, n_dev=16)
    return model, data


def decomfl_case(clients: int, batch: int, threads: int, root: Path) -> dict:
    """`mpihybrid run decomfl` on one rank with ``clients`` clients, all sampled every round."""
    from _launch import run_job

    model, data = prepare(root)
    out = root / f"decomfl-{clients}.h5"
    sets = [f"model.path='{model}'", f"data.path='{data}'", f"fl.clients={clients}", f"fl.sampled={clients}"]
    sets += [f"train.steps={ROUNDS}", "train.eval_every=1000", f"train.batch_size={batch}", f"train.threads={threads}"]
    r = run_job(1, "decomfl", REPO / "jobs" / "decomfl" / "sst2-opt.toml", out, *sets, timeout=3600)
    from safetensors import safe_open

    wall = r["metrics"]["wall_time"]
    with safe_open(model / "model.safetensors", "pt") as f:  # tied embeddings are saved once
        d = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return {
        "case": f"decomfl-{clients}",
        "d": d,
        "model_bytes": 4 * d,
        "round_s": float(wall[1] - wall[0]),
        "peak_rss": int(r["memory"]["peak_rss_bytes"][0]),
        "uplink_bytes": float(r["metrics"]["uplink_bytes"][1]),
        "sha": r["sha"][0],
    }


def flat_case(clients: int, batch: int, root: Path) -> dict:
    """The full-vector path, in this process: c client steps and the server's update, on the
    first ``batch`` prompts of the decomfl runs' data and their model."""
    from mpihybrid.data.text import TASKS, load_task
    from mpihybrid.models import FlatModel
    from mpihybrid.models.hf import load_tokenizer, prompt_classifier
    from mpihybrid.solvers.zeroth_order import SGDRule, direction, finite_differences

    model, data = prepare(root)
    task = load_task("sst2", str(data), load_tokenizer(str(model)), 32)
    xb, yb = torch.from_numpy(task.x_train[:batch]), torch.from_numpy(task.y_train[:batch])
    flat = FlatModel(prompt_classifier(str(model), TASKS["sst2"].words))
    d, rule = flat.d, SGDRule()
    x0 = flat.initial()
    snapshots = [(x0.clone(), torch.zeros_like(x0)) for _ in range(clients)]
    server = (x0.clone(), torch.zeros_like(x0))
    t = time.perf_counter()
    for x, buf in snapshots:
        dirs = [direction(d, SEED, ("decomfl", 0, 0, p)) for p in range(P)]
        local = (x.clone(), buf.clone())
        with torch.no_grad():
            gbar, _ = finite_differences(lambda v: float(flat.loss(v, xb, yb)), local[0], dirs, MU)
        rule.step(*local, gbar, dirs, LR)
        del dirs, local
    rule.step(*server, gbar, [direction(d, SEED, ("decomfl", 0, 0, p)) for p in range(P)], LR)
    round_s = time.perf_counter() - t
    return {"case": f"flat-{clients}", "d": d, "model_bytes": 4 * d, "round_s": round_s, "peak_rss": peak()}


def fmt(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def in_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{args}: failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "decomfl_llm")
    p.add_argument("--work", type=Path, default=Path("/tmp/mpihybrid-bench-decomfl-llm"), help="model, data, runs")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (a rank's share)")
    p.add_argument("--only", nargs="+", default=["decomfl-1", "decomfl-4", "flat-1", "flat-4"])
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(flat_case(int(args.case.split("-")[1]), args.batch, args.work)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    imports = in_child("-c", IMPORTS)
    rows = []
    for name in args.only:
        kind, clients = name.split("-")
        if kind == "decomfl":
            r = decomfl_case(int(clients), args.batch, args.threads, args.work)
        else:
            cmd = ["--case", name, "--batch", str(args.batch), "--threads", str(args.threads), "--work", str(args.work)]
            r = in_child(__file__, *cmd)
        (args.out / f"{name}.json").write_text(json.dumps(r, indent=1) + "\n")
        rows.append(r)
    d = rows[0]["d"]
    lines = [
        f"# DeComFL on the OPT-125M architecture (d = {d:,}), one rank, CPU, {args.threads} thread(s), "
        f"batch {args.batch}, P = {P} forward differences, K = 1",
        "",
        "| case | clients sampled on the rank | s / round | peak RSS | peak / model bytes | "
        "(peak − imports) / model bytes | uplink bytes per client and round |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kind, clients = r["case"].split("-")
        mb, up = r["model_bytes"], r.get("uplink_bytes", 4 * P)
        lines.append(
            f"| {kind} | {clients} | {r['round_s']:.1f} s | {fmt(r['peak_rss'])} | {r['peak_rss'] / mb:.2f} | "
            f"{(r['peak_rss'] - imports) / mb:.2f} | {up:.0f} |"
        )
    lines += [
        "",
        f"Imports alone: {fmt(imports)} peak RSS. Model bytes (float32): {fmt(4 * d)}. {os.cpu_count()} cores, "
        f"load average {load:.1f} before the first case (other processes share the machine: compare timings "
        "within one run only). Prompts: the small SST-2's, 5 to 12 tokens.",
        "",
        f"Uplink per sampled client per round (K = 1): DeComFL 4·K·P = {4 * P} B (measured by the decomfl runs); "
        f"FedAvg and FedZO 4·d = {4 * d:,} B ({4 * d / (4 * P):,.0f}x), from their round protocol (the "
        "digits runs of tests/integration/test_federated.py measure 4·d).",
    ]
    text = "\n".join(lines)
    print(text)
    (args.out / "README.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
