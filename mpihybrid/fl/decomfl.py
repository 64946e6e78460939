"""DeComFL (arXiv 2405.15861): zeroth-order federated learning whose rounds move only scalars.

Round r, with sampled clients S_r (derived from the seed, never sent):
1. A rank with sampled clients rebuilds the global model lazily: it replays the rounds it
   missed from the (round, ḡ) history onto its copy of the global model (the one it had when
   one of its clients last took part).
2. Each of its sampled clients copies that model into the rank's one working model and runs K
   local ZO-SGD steps on it in place; step j uses P directions z_{r,j,p} derived from
   (seed, r, j, p) and shared by all clients of the round, and yields P scalars
   g_{j,p} = (f(x + μz) − f(x))/μ on its batch. The working model is then free for the next client.
3. One Allreduce of K·P float32 sums the scalars (zeros from ranks without sampled clients);
   ḡ = sum / m is the round's whole update. The server (rank 0) applies it to its global
   model; every rank appends (r, ḡ) to its copy of the history and prunes rounds older than
   the stalest rank's model.
A replay and the server's update call the same in-place `SGDRule.update_` on directions
regenerated piece by piece, and never perturb, so every rank's rebuilt model is bitwise equal
to the server's. A rank holds two models (the global one and the working one), plus one
momentum buffer each with momentum, whatever its number of clients and P.
"""

from __future__ import annotations

import numpy as np
import torch

from mpihybrid.blocks import blocks
from mpihybrid.fl.common import FederatedRounds, ZOConfig, learning_rate, zo_local_steps
from mpihybrid.harness import Diverged, Run
from mpihybrid.io.checkpoint import State
from mpihybrid.io.results import param_sha256
from mpihybrid.solvers.zeroth_order import Directions, SGDRule


class DeComFL(FederatedRounds):
    sections = {**FederatedRounds.sections, "zo": ZOConfig}

    def __init__(self, run: Run):
        super().__init__(run)
        fed, cfg = self.fed, run.config
        self.rule = SGDRule(cfg.train.momentum, cfg.train.weight_decay)
        self.K, self.P = cfg.fl.local_steps, cfg.zo.perturbations
        # This rank's copy of the global model and its momentum; the working model's momentum.
        self.x = [p.detach().clone() for p in fed.trainable]
        self.buf = [torch.zeros_like(t) for t in self.x] if self.rule.momentum else []
        self.work_buf = [torch.zeros_like(t) for t in self.x] if self.rule.momentum else []
        # The round every rank's copy holds, known on every rank from the sampling alone.
        self.reached = np.zeros(fed.world.size, dtype=np.int64)
        split = blocks(cfg.fl.clients, fed.world.size)
        self.owner = np.repeat(np.arange(fed.world.size), split.counts)
        self.history: dict[int, torch.Tensor] = {}
        self.replayed = 0

    def apply_round(self, round_: int, gbar: torch.Tensor) -> None:
        """The round's update on this rank's global model, K steps of P regenerated directions."""
        lr, zo = learning_rate(self.config, round_), self.config.zo
        for j in range(self.K):
            dirs = Directions.over(self.x, self.config.seed, ("decomfl", round_, j), self.P, zo.direction)
            self.rule.update_(self.x, self.buf, dirs, gbar[j], lr)

    def catch_up(self, round_: int) -> None:
        """Replay the missed rounds: this rank's model becomes the global model at ``round_``."""
        rank = self.fed.world.rank
        for r in range(int(self.reached[rank]), round_):
            self.apply_round(r, self.history[r])
            self.replayed += 1
        self.reached[rank] = round_

    @torch.no_grad()
    def local_update(self, client: int, round_: int) -> torch.Tensor:
        fed = self.fed
        fed.load(self.x)
        for b, src in zip(self.work_buf, self.buf):
            b.copy_(src)
        return zo_local_steps(fed, self.rule, client, round_, self.work_buf, lambda j: ("decomfl", round_, j))

    def play_round(self, round_: int) -> dict[str, float]:
        fed = self.fed
        sampled = fed.sampled(round_)
        mine = [int(k) for k in sampled if self.owner[k] == fed.world.rank]
        total = torch.zeros(self.K, self.P, dtype=torch.float32)
        if mine:
            self.catch_up(round_)
        for k in mine:
            total += self.local_update(k, round_)
        with fed.world.stats.label("round"):
            fed.world.Allreduce(total)
        gbar = total / self.config.fl.sampled
        if not torch.isfinite(gbar).all():
            raise Diverged(f"training diverged in round {round_ + 1}: non-finite ZO scalars")
        self.history[round_] = gbar
        self.reached[self.owner[sampled]] = round_
        if fed.world.rank == 0:
            self.apply_round(round_, gbar)
        self.reached[0] = round_ + 1  # the server applies every round
        stalest = self.reached.min()
        for r in [r for r in self.history if r < stalest]:
            del self.history[r]
        return {"history_length": len(self.history)}

    def global_model(self) -> list[torch.Tensor]:
        return self.x

    def close(self, error: str) -> None:
        """Bring every rank to the final global model and check that all agree bitwise. After a
        divergence the models are hashed as they are; the results file says "failed"."""
        if error:
            return
        self.catch_up(self.steps_done)
        hashes = set(self.fed.world.mpi.allgather(param_sha256(self.x)))
        if len(hashes) != 1:
            raise RuntimeError(f"rank {self.fed.world.rank}: the ranks' rebuilt global models differ")

    def memory(self) -> dict[str, int]:
        held = [*self.x, *self.buf, *self.fed.trainable, *self.work_buf]
        return {"client_state_bytes": sum(t.nbytes for t in held)}

    def counters(self) -> dict[str, float]:
        return {"replayed_rounds": self.replayed}

    def state(self) -> State:
        rounds = sorted(self.history)
        shared = {
            "reached": self.reached.copy(),
            "history/rounds": np.array(rounds, dtype=np.int64),
            "history/gbar": torch.stack([self.history[r] for r in rounds])
            if rounds
            else torch.zeros(0, self.K, self.P),
        }
        local = {"replayed": self.replayed}
        for i, t in enumerate(self.x):
            local[f"model/{i}"] = t
        for i, t in enumerate(self.buf):
            local[f"momentum/{i}"] = t
        return State(shared, local)

    @torch.no_grad()
    def load_state(self, state: State) -> None:
        shared, local = state.shared, state.local
        self.reached = np.asarray(shared["reached"]).copy()
        self.history = {int(r): g.clone() for r, g in zip(shared["history/rounds"], shared["history/gbar"])}
        self.replayed = int(local["replayed"])
        for i, t in enumerate(self.x):
            t.copy_(local[f"model/{i}"])
        for i, t in enumerate(self.buf):
            t.copy_(local[f"momentum/{i}"])
