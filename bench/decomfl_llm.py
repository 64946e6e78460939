"""DeComFL's zeroth-order step on the OPT-125M architecture: the in-place kernels against the
full-vector path they replace, per rank, on the CPU.

    .venv/bin/python bench/decomfl_llm.py [--out bench/results/decomfl_llm] [--batch 32] [--threads 1]
                                          [--only inplace-1 inplace-4 flat-1 flat-4]

The model is OPT-125M's published architecture (OPTConfig: 12 layers, width 768, vocabulary
50,272, tied embeddings; d = 125,239,296) with random weights drawn here: nothing is
downloaded. A batch is ``--batch`` random prompts of 8 to 31 tokens, left padded to 31 (SST-2's
max_length 32 less the answer word), scored on two label tokens. Each case runs in its own
process, so its peak RSS is its own: "start" is the RSS with torch and transformers' OPT loaded,
"built" after the model is built, and peak − built is what the ZO machinery adds to the model.
Per rank, with c of its clients sampled in a round:

- ``inplace-c`` (the planned phase-2 layout): the rank's model at its round (a list of tensors)
  plus the working model; each client copies the rank's model into the working one and takes
  one ZO step (P = 5 forward differences, `estimate_`); then the round's update is replayed
  once on the rank's model (`SGDRule.update_`).
- ``flat-c`` (DeComFL's code path today): a flat model per client (snapshot and momentum),
  the server's on rank 0, and per step the local copy, P d-sized directions and x + μz.
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
P, MU, LR, SEED, LENGTH = 5, 1e-3, 5e-6, 0, 31


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak() -> int:
    """Peak RSS of this process (VmHWM; ru_maxrss would start at the parent's)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def opt_125m():
    """OPT-125M's architecture with seeded random weights, as a classifier over two tokens."""
    from transformers import OPTConfig, OPTForCausalLM
    from transformers.utils import logging

    from mpihybrid.models.hf import PromptClassifier

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
    return PromptClassifier(OPTForCausalLM(config).eval(), [100, 200])


def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(SEED)
    x = np.zeros((n, 2, LENGTH), dtype=np.int64)
    x[:, 0] = 1  # OPT's padding id
    for i, k in enumerate(rng.integers(8, LENGTH + 1, n)):
        x[i, 0, LENGTH - k :] = rng.integers(3, 50272, k)
        x[i, 1, LENGTH - k :] = 1
    return torch.from_numpy(x), torch.from_numpy(rng.integers(0, 2, n))


def case(name: str, n: int) -> dict:
    """One case in this process: times and memory, as a JSON-able dict."""
    from transformers import OPTForCausalLM  # noqa: F401  (loaded before "start", so start counts it)

    from mpihybrid.models import FlatModel
    from mpihybrid.solvers.zeroth_order import Directions, SGDRule, direction, estimate_, finite_differences

    kind, clients = name.split("-")
    clients = int(clients)
    start = rss()
    model = opt_125m()
    params = list(model.parameters())
    d = sum(p.numel() for p in params)
    xb, yb = batch(n)
    built = rss()
    out = {"case": name, "d": d, "model_bytes": 4 * d, "start_rss": start, "built_rss": built}
    rule = SGDRule()

    @torch.no_grad()
    def loss() -> float:
        return float(torch.nn.functional.cross_entropy(model(xb), yb))

    t = time.perf_counter()
    loss()
    out["forward_s"] = time.perf_counter() - t
    if kind == "inplace":
        rank_model = [p.detach().clone() for p in params]  # the rank's model at its round
        steps = []
        for _ in range(clients):
            with torch.no_grad():
                for w, r in zip(params, rank_model):
                    w.copy_(r)
            dirs = Directions.over(params, SEED, ("decomfl", 0, 0), P)
            t = time.perf_counter()
            gbar, _ = estimate_(params, loss, dirs, MU, "forward")
            steps.append(time.perf_counter() - t)
        t = time.perf_counter()
        rule.update_(rank_model, [], Directions.over(rank_model, SEED, ("decomfl", 0, 0), P), gbar, LR)
        out["replay_round_s"] = time.perf_counter() - t
    else:
        flat = FlatModel(model)
        x0 = flat.initial()
        snapshots = [(x0.clone(), torch.zeros_like(x0)) for _ in range(clients)]
        server = (x0.clone(), torch.zeros_like(x0))
        steps = []
        for x, buf in snapshots:
            t = time.perf_counter()
            dirs = [direction(d, SEED, ("decomfl", 0, 0, p)) for p in range(P)]
            local = (x.clone(), buf.clone())
            with torch.no_grad():
                gbar, _ = finite_differences(lambda v: float(flat.loss(v, xb, yb)), local[0], dirs, MU)
            rule.step(*local, gbar, dirs, LR)
            steps.append(time.perf_counter() - t)
            del dirs, local
        t = time.perf_counter()
        rule.step(*server, gbar, [direction(d, SEED, ("decomfl", 0, 0, p)) for p in range(P)], LR)
        out["replay_round_s"] = time.perf_counter() - t
    out["step_s"] = float(np.mean(steps))
    out["peak_rss"] = peak()
    return out


def fmt(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "decomfl_llm")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (a rank's share)")
    p.add_argument("--only", nargs="+", default=["inplace-1", "inplace-4", "flat-1", "flat-4"])
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(case(args.case, args.batch)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    rows = []
    for name in args.only:
        cmd = [sys.executable, __file__, "--case", name, "--batch", str(args.batch), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        (args.out / f"{name}.json").write_text(json.dumps(r, indent=1) + "\n")
        rows.append(r)
    if not rows:
        return
    d = rows[0]["d"]
    lines = [
        f"# DeComFL on the OPT-125M architecture (d = {d:,}), one rank, CPU, {args.threads} thread(s), "
        f"batch {args.batch} x {LENGTH} tokens, P = {P} forward differences",
        "",
        "| case | clients sampled on the rank | forward pass | ZO step per client | replay of one round | "
        "start RSS | built RSS | peak RSS | peak / model bytes | (peak − start) / model bytes | "
        "(peak − built) / model bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kind, clients = r["case"].split("-")
        mb = r["model_bytes"]
        lines.append(
            f"| {kind} | {clients} | {r['forward_s']:.2f} s | {r['step_s']:.2f} s | {r['replay_round_s']:.2f} s | "
            f"{fmt(r['start_rss'])} | {fmt(r['built_rss'])} | {fmt(r['peak_rss'])} | {r['peak_rss'] / mb:.2f} | "
            f"{(r['peak_rss'] - r['start_rss']) / mb:.2f} | {(r['peak_rss'] - r['built_rss']) / mb:.2f} |"
        )
    lines += [
        "",
        f"{os.cpu_count()} cores, load average {load:.1f} before the first case (other processes share the "
        "machine: compare timings within one run only).",
        "",
        f"Model bytes (float32): {fmt(4 * d)}. Uplink per sampled client per round (K = 1): DeComFL 4·K·P = "
        f"{4 * P} B; FedAvg and FedZO 4·d = {4 * d:,} B ({4 * d / (4 * P):,.0f}x), from the round protocol "
        "(the federated runs measure it in their results files).",
    ]
    text = "\n".join(lines)
    print(text)
    (args.out / "README.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
