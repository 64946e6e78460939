"""DeComFL (arXiv 2405.15861): zeroth-order federated learning whose rounds move only scalars.

Round r, with sampled clients S_r (derived from the seed, never sent):
1. Each sampled client rebuilds the global model lazily: it replays the rounds it missed from
   the (round, ḡ) history, starting from its snapshot (the global model when it last took
   part), and keeps the result as its new snapshot.
2. It runs K local ZO-SGD steps; step j uses P directions z_{r,j,p} derived from
   (seed, r, j, p) and shared by all clients of the round, and yields P scalars
   g_{j,p} = (f(x + μz) − f(x))/μ on its batch. Its local model is then discarded.
3. One Allreduce of K·P float32 sums the scalars (zeros from ranks without sampled clients);
   ḡ = sum / m is the round's whole update. The server (rank 0) applies it to its
   evaluation model; every rank appends (r, ḡ) to its copy of the history and prunes rounds
   older than the stalest client's snapshot.
Replaying a round and taking a local step call the same `SGDRule.step` on regenerated
directions, so every client's rebuilt model is bitwise equal to the server's.
"""

from __future__ import annotations

import numpy as np
import torch

from mpihybrid.config import Config
from mpihybrid.fl.common import (
    Federation,
    FLConfig,
    ZOConfig,
    learning_rate,
    run_rounds,
    validate_federation,
    zo_local_steps,
)
from mpihybrid.harness import Diverged, Run
from mpihybrid.io.results import param_sha256
from mpihybrid.solvers.zeroth_order import SGDRule, direction

SECTIONS = {"fl": FLConfig, "zo": ZOConfig}


def validate(config: Config, world_size: int) -> None:
    validate_federation(config, world_size)


class DeComFL:
    def __init__(self, fed: Federation):
        cfg = fed.config
        self.fed, self.cfg = fed, cfg
        self.rule = SGDRule(cfg.train.momentum, cfg.train.weight_decay)
        self.K, self.P = cfg.fl.local_steps, cfg.zo.perturbations
        x0 = fed.flat.initial()
        # Snapshots (model, momentum buffer) of this rank's clients and the round they hold.
        self.snapshots = {k: (x0.clone(), torch.zeros_like(x0)) for k in fed.mine}
        self.synced = np.zeros(cfg.fl.clients, dtype=np.int64)  # every client's snapshot round, on every rank
        self.history: dict[int, torch.Tensor] = {}
        self.server = (x0.clone(), torch.zeros_like(x0)) if fed.world.rank == 0 else None
        self.replayed = 0

    def directions(self, round_: int, step: int) -> list[torch.Tensor]:
        z = self.cfg.zo
        return [
            direction(self.fed.flat.d, self.cfg.seed, ("decomfl", round_, step, p), z.direction) for p in range(self.P)
        ]

    def apply_round(self, state: tuple[torch.Tensor, torch.Tensor], round_: int, gbar: torch.Tensor) -> None:
        x, buf = state
        lr = learning_rate(self.cfg, round_)
        for j in range(self.K):
            self.rule.step(x, buf, gbar[j], self.directions(round_, j), lr)

    def rebuild(self, client: int, round_: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, buf = self.snapshots[client]
        for r in range(int(self.synced[client]), round_):
            self.apply_round((x, buf), r, self.history[r])
            self.replayed += 1
        self.synced[client] = round_
        return x, buf

    def local_update(self, client: int, round_: int, x: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        # The snapshot stays; the copy the client trains is thrown away after its K steps.
        return zo_local_steps(
            self.fed, self.rule, client, round_, x.clone(), buf.clone(), lambda j: self.directions(round_, j)
        )

    def round(self, round_: int) -> None:
        fed = self.fed
        total = torch.zeros(self.K, self.P, dtype=torch.float32)
        for k in fed.sampled(round_):
            if k in self.snapshots:
                total += self.local_update(k, round_, *self.rebuild(k, round_))
            else:
                self.synced[k] = round_
        with fed.world.stats.label("round"):
            fed.world.Allreduce(total)
        gbar = total / self.cfg.fl.sampled
        if not torch.isfinite(gbar).all():
            raise Diverged(f"training diverged in round {round_ + 1}: non-finite ZO scalars")
        self.history[round_] = gbar
        if self.server is not None:
            self.apply_round(self.server, round_, gbar)
        stalest = self.synced.min()
        for r in [r for r in self.history if r < stalest]:
            del self.history[r]

    def catch_up_all(self, rounds: int) -> torch.Tensor:
        """Bring every client on this rank to the final global model; check they agree bitwise."""
        models = [self.rebuild(k, rounds)[0] for k in self.fed.mine]
        hashes = {param_sha256([x]) for x in models}
        if self.server is not None:
            hashes.add(param_sha256([self.server[0]]))
        if len(hashes) != 1:
            raise RuntimeError(
                f"rank {self.fed.world.rank}: rebuilt client models differ from each other or the server"
            )
        return models[0]

    # -- checkpoint state ----------------------------------------------------------------
    def shared_state(self) -> dict:
        rounds = sorted(self.history)
        return {
            "synced": self.synced.copy(),
            "history/rounds": np.array(rounds, dtype=np.int64),
            "history/gbar": torch.stack([self.history[r] for r in rounds])
            if rounds
            else torch.zeros(0, self.K, self.P),
        }

    def local_state(self) -> dict:
        tree = {"replayed": self.replayed}
        for k, (x, buf) in self.snapshots.items():
            tree[f"client/{k}/x"], tree[f"client/{k}/buf"] = x, buf
        if self.server is not None:
            tree["server/x"], tree["server/buf"] = self.server
        return tree

    def load(self, shared: dict, local: dict) -> None:
        self.synced = np.asarray(shared["synced"]).copy()
        self.history = {int(r): g.clone() for r, g in zip(shared["history/rounds"], shared["history/gbar"])}
        self.replayed = int(local["replayed"])
        self.snapshots = {k: (local[f"client/{k}/x"].clone(), local[f"client/{k}/buf"].clone()) for k in self.fed.mine}
        if self.server is not None:
            self.server = (local["server/x"].clone(), local["server/buf"].clone())


def run(run: Run) -> None:
    fed = Federation(run)
    algo = DeComFL(fed)
    if run.resumed is not None:
        algo.load(run.resumed.state.shared, run.resumed.state.local)
    run.set_threads()

    def play(round_: int) -> dict[str, float]:
        algo.round(round_)
        return {"history_length": len(algo.history)}

    error = run_rounds(run, fed, play, lambda: algo.server[0], lambda: (algo.shared_state(), algo.local_state()))
    # After a divergence the snapshots are hashed as they are; the results file says "failed".
    final = next(iter(algo.snapshots.values()))[0] if error else algo.catch_up_all(run.config.train.steps)
    run.finish(
        fed.flat.tensors(final),
        memory={"client_state_bytes": sum(x.nbytes + b.nbytes for x, b in algo.snapshots.values())},
        per_rank={"replayed_rounds": algo.replayed},
        error=error,
    )
    if error:
        raise Diverged(error)
