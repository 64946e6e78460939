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

from mpihybrid.fl.common import FederatedRounds, ZOConfig, learning_rate, zo_local_steps
from mpihybrid.harness import Diverged, Run
from mpihybrid.io.checkpoint import State
from mpihybrid.io.results import param_sha256
from mpihybrid.solvers.zeroth_order import SGDRule, direction


class DeComFL(FederatedRounds):
    sections = {**FederatedRounds.sections, "zo": ZOConfig}

    def __init__(self, run: Run):
        super().__init__(run)
        fed, cfg = self.fed, run.config
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
        z = self.config.zo
        return [
            direction(self.fed.flat.d, self.config.seed, ("decomfl", round_, step, p), z.direction)
            for p in range(self.P)
        ]

    def apply_round(self, state: tuple[torch.Tensor, torch.Tensor], round_: int, gbar: torch.Tensor) -> None:
        x, buf = state
        lr = learning_rate(self.config, round_)
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

    def play_round(self, round_: int) -> dict[str, float]:
        fed = self.fed
        total = torch.zeros(self.K, self.P, dtype=torch.float32)
        for k in fed.sampled(round_):
            if k in self.snapshots:
                total += self.local_update(k, round_, *self.rebuild(k, round_))
            else:
                self.synced[k] = round_
        with fed.world.stats.label("round"):
            fed.world.Allreduce(total)
        gbar = total / self.config.fl.sampled
        if not torch.isfinite(gbar).all():
            raise Diverged(f"training diverged in round {round_ + 1}: non-finite ZO scalars")
        self.history[round_] = gbar
        if self.server is not None:
            self.apply_round(self.server, round_, gbar)
        stalest = self.synced.min()
        for r in [r for r in self.history if r < stalest]:
            del self.history[r]
        return {"history_length": len(self.history)}

    def global_model(self) -> torch.Tensor:
        return self.server[0]

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

    def close(self, error: str) -> None:
        # After a divergence the snapshots are hashed as they are; the results file says "failed".
        self.final = next(iter(self.snapshots.values()))[0] if error else self.catch_up_all(self.steps_done)

    def parameters(self) -> list[torch.Tensor]:
        return self.fed.flat.tensors(self.final)

    def memory(self) -> dict[str, int]:
        return {"client_state_bytes": sum(x.nbytes + b.nbytes for x, b in self.snapshots.values())}

    def counters(self) -> dict[str, float]:
        return {"replayed_rounds": self.replayed}

    def state(self) -> State:
        rounds = sorted(self.history)
        shared = {
            "synced": self.synced.copy(),
            "history/rounds": np.array(rounds, dtype=np.int64),
            "history/gbar": torch.stack([self.history[r] for r in rounds])
            if rounds
            else torch.zeros(0, self.K, self.P),
        }
        local = {"replayed": self.replayed}
        for k, (x, buf) in self.snapshots.items():
            local[f"client/{k}/x"], local[f"client/{k}/buf"] = x, buf
        if self.server is not None:
            local["server/x"], local["server/buf"] = self.server
        return State(shared, local)

    def load_state(self, state: State) -> None:
        shared, local = state.shared, state.local
        self.synced = np.asarray(shared["synced"]).copy()
        self.history = {int(r): g.clone() for r, g in zip(shared["history/rounds"], shared["history/gbar"])}
        self.replayed = int(local["replayed"])
        self.snapshots = {k: (local[f"client/{k}/x"].clone(), local[f"client/{k}/buf"].clone()) for k in self.fed.mine}
        if self.server is not None:
            self.server = (local["server/x"].clone(), local["server/buf"].clone())
