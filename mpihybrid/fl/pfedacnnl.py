"""pFedACnnL: cluster the clients, fit one FedACnnL model per group, personalise analytically
(arXiv 2502.06915; docs/fedacnnl.md).

1. Every client computes a grouping statistic (``pfl.grouping``): its label histogram (the
   default, cheap and leaking little), its local ridge classifier on the raw inputs, or its
   per-class mean inputs. One Allgatherv collects them; rank 0 runs K-means (k-means++,
   ``n_init`` 10, seed from the config) and broadcasts the group of every client.
2. One communicator per group (``Split`` of the ranks that host a client of that group); FedACnnL
   runs inside each, layer by layer in lockstep with a global FedACnnL model on the world,
   which is kept as an ablation. A rank hosting clients of several groups serves them in
   group order, so no two groups wait on each other.
3. Each client adapts its group model with no further communication:
   W_k = (A_kᵀA_k + λI)⁻¹(A_kᵀY_k + λ W_group) on the classifier (``pfl.personalize = "last"``)
   or layer by layer with its own pseudo-labels (``"all"``). λ = ``pfl.lam`` · tr(A_kᵀA_k)/dim,
   so λ → ∞ gives the group model back and λ → 0 the client's own least squares.

Reported: the mean local test accuracy over clients of the personalised models (plain and
sample-weighted), of the group models and of the global model, and the global model's test
accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from mpi4py import MPI
from sklearn.cluster import KMeans

from mpihybrid.comm import Comm
from mpihybrid.config import Config, require
from mpihybrid.fl.common import Federation
from mpihybrid.fl.fedacnnl import (
    FedACnnL,
    client_accuracies,
    client_accuracy_sums,
    saved_weights,
    weights_tree,
)
from mpihybrid.fl.layerwise import Client, LayerReport, LayerwiseFit, stream
from mpihybrid.harness import Run
from mpihybrid.io.checkpoint import State
from mpihybrid.io.state import nest, subtree
from mpihybrid.models.acnnl import ACnnLConfig, Network
from mpihybrid.seeding import derive_seed
from mpihybrid.solvers.least_squares import GramAccumulator, ridge_scale, ridge_solve


@dataclass
class PFLConfig:
    groups: int = 2  # K-means clusters (one group model each)
    grouping: Literal["labels", "classifier", "class-means"] = "labels"
    lam: float = 1.0  # proximal weight, relative to tr(A_kᵀA_k)/dim
    personalize: Literal["last", "all"] = "last"

    def check(self) -> None:
        require(self.groups >= 1, "pfl.groups", f"must be >= 1, got {self.groups}")
        require(self.lam > 0, "pfl.lam", f"must be > 0, got {self.lam}")


def grouping_statistic(kind: str, client: Client, num_classes: int) -> np.ndarray:
    """The vector K-means sees for one client (unit length for the two model-based options)."""
    y = client.y.cpu().numpy()
    if kind == "labels":
        return np.bincount(y, minlength=num_classes) / max(len(y), 1)
    x = client.x.reshape(len(y), -1).to("cpu", torch.float64).numpy()
    if kind == "classifier":
        A = torch.from_numpy(np.hstack([x, np.ones((len(y), 1))]))
        G = A.T @ A
        Y = torch.from_numpy(np.eye(num_classes)[y])
        stat = ridge_solve(G, A.T @ Y, ridge_scale(G, 1e-3) + 1e-12).W.numpy().ravel()
    else:
        stat = np.stack(
            [x[y == c].mean(0) if (y == c).any() else np.zeros(x.shape[1]) for c in range(num_classes)]
        ).ravel()
    return stat / max(np.linalg.norm(stat), 1e-300)


def assign_groups(world: Comm, fed: Federation, clients: list[Client], num_classes: int) -> np.ndarray:
    """Collective: every client's group, from K-means on rank 0 over the gathered statistics."""
    cfg = fed.config
    mine = np.stack([grouping_statistic(cfg.pfl.grouping, c, num_classes) for c in clients])
    width = mine.shape[1]
    counts = world.mpi.allgather(mine.size)
    gathered = np.empty(sum(counts))
    with world.stats.label("grouping"):
        world.Allgatherv(np.ascontiguousarray(mine).ravel(), gathered, counts)
    stats = gathered.reshape(-1, width)  # rows in client order: ranks hold contiguous client ranges
    groups = np.empty(cfg.fl.clients, dtype=np.int64)
    if world.rank == 0:
        km = KMeans(cfg.pfl.groups, init="k-means++", n_init=10, random_state=derive_seed(cfg.seed, "kmeans") % 2**31)
        groups[:] = km.fit_predict(stats)
    with world.stats.label("grouping"):
        world.Bcast(groups, root=0)
    return groups


def personalize(net: Network, client: Client, group_weights: list[torch.Tensor], cfg: Config) -> list[torch.Tensor]:
    """The client's proximal ridge solutions around its group model (no communication)."""
    last = len(net) - 1
    first = 0 if cfg.pfl.personalize == "all" else last
    H = net.features(net.prepare(client.x), group_weights[:first])
    weights = list(group_weights[:first])
    for index in range(first, len(net)):
        layer = net.layers[index]
        acc = GramAccumulator(layer.dim, layer.out, device=net.device)
        stream(net, index, H, client.y, acc, cfg.acnnl.batch_size)
        G, B = acc.sums()
        W = ridge_solve(G, B, ridge_scale(G, cfg.pfl.lam), prior=group_weights[index]).W
        weights.append(W)
        if index < last:
            H = net.features(H, [W], start=index)
    return weights


def group_fits(
    world: Comm, net: Network, clients: list[Client], groups: np.ndarray, config: ACnnLConfig
) -> dict[int, LayerwiseFit]:
    """Collective: one sub-communicator (and fit) per group this rank hosts clients of."""
    fits = {}
    for g in range(int(groups.max()) + 1):
        members = [c for c in clients if groups[c.index] == g]
        sub = world.Split(0 if members else MPI.UNDEFINED, key=world.rank)
        if sub is not None:
            fits[g] = LayerwiseFit(net, sub, members, config)
    return fits


class PFedACnnL(FedACnnL):
    sections = {**FedACnnL.sections, "pfl": PFLConfig}

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        super().validate(config, world_size)
        require(
            config.pfl.groups <= config.fl.clients,
            "pfl.groups",
            f"{config.pfl.groups} groups for {config.fl.clients} clients; use at most one group per client",
        )

    def __init__(self, run: Run):
        super().__init__(run)
        self.groups = assign_groups(run.world, self.fed, self.clients, self.fed.data.num_classes)
        self.fits = group_fits(run.world, self.net, self.clients, self.groups, run.config.acnnl)

    def fit_layer(self, index: int) -> LayerReport:
        report = self.fit.fit_layer(index)
        for g in sorted(self.fits):
            self.fits[g].fit_layer(index)
        return report

    def state(self) -> State:
        groups = {f"group{g}": weights_tree(fit.weights) for g, fit in self.fits.items()}
        return State(super().state().shared, {k: v for g, tree in groups.items() for k, v in nest(g, tree).items()})

    def load_state(self, state: State) -> None:
        super().load_state(state)
        for g, fit in self.fits.items():
            fit.restore(saved_weights(subtree(state.local, f"group{g}"), self.run.start_step))

    def counters(self) -> dict[str, float]:
        return {"groups_hosted": float(len(self.fits))}

    def close(self, error: str) -> None:
        for fit in self.fits.values():
            fit.comm.Free()

    def evaluate(self) -> dict[str, float]:
        """Mean local test accuracy over clients: personalised, group and global models."""
        net, groups, fits, clients = self.net, self.groups, self.fits, self.clients
        row = {"groups": float(len(np.unique(groups)))}
        if self.run.is_root:
            data = self.fed.data
            correct, count = net.accuracy_counts(
                torch.from_numpy(data.x_test), torch.from_numpy(data.y_test), self.fit.weights
            )
            row["test_accuracy"] = correct / count
        personal = {c.index: personalize(net, c, fits[groups[c.index]].weights, self.config) for c in clients}
        for prefix, weights_of in (
            ("", lambda c: personal[c.index]),
            ("group_", lambda c: fits[groups[c.index]].weights),
            ("global_", lambda c: self.fit.weights),
        ):
            acc = client_accuracies(self.run.world, client_accuracy_sums(net, clients, weights_of))
            if acc:
                row[f"{prefix}mean_client_accuracy"] = acc["mean"]
                row[f"{prefix}weighted_client_accuracy"] = acc["weighted"]
        return row
