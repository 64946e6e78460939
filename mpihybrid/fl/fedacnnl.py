"""FedACnnL: each layer of an ACnnL network is one distributed least-squares problem, solved
once from the clients' summed Gram statistics (arXiv 2502.06915; docs/fedacnnl.md).

A step is a layer (`fl.layerwise.LayerwiseFit`): one Reduce of the statistics, one Bcast of
the weights. Every client takes part in the single pass, so [fl] has only ``clients``; nothing
of [train] but ``threads`` applies. A checkpoint follows every layer; a resume fits the next.
The clients' rows, the layer inputs, the sums and the solve live on ``run.device`` (docs/gpu.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mpihybrid.algorithm import Algorithm
from mpihybrid.comm import Comm
from mpihybrid.config import Config, require
from mpihybrid.fl.common import Federation, validate_federation
from mpihybrid.fl.layerwise import Client, LayerReport, LayerwiseFit
from mpihybrid.harness import Run
from mpihybrid.io.checkpoint import State
from mpihybrid.io.state import Tree, nest, subtree
from mpihybrid.models.acnnl import ACnnLConfig, Network, check_config
from mpihybrid.seeding import numpy_rng


@dataclass
class AnalyticFLConfig:
    clients: int = 8  # virtual clients, spread over the ranks (M >> ranks is fine)

    def check(self) -> None:
        require(self.clients >= 1, "fl.clients", f"must be >= 1, got {self.clients}")


def local_clients(fed: Federation, device: torch.device) -> list[Client]:
    """This rank's clients on ``device``, each split into local train / local test from (seed, client)."""
    frac = fed.config.acnnl.local_test_fraction
    out = []
    for k in fed.mine:
        idx = fed.client_indices[k]
        order = numpy_rng(fed.config.seed, "local-test", k).permutation(len(idx)) if frac else np.arange(len(idx))
        n_test = int(frac * len(idx))
        train, test = torch.from_numpy(np.sort(idx[order[n_test:]])), torch.from_numpy(np.sort(idx[order[:n_test]]))
        x, y = fed.x_train, fed.y_train
        out.append(Client(k, *(t.to(device) for t in (x[train], y[train], x[test], y[test]))))
    return out


def exposed_clients(fed: Federation, net: Network, index: int, clients: list[int]) -> list[int]:
    """Clients whose rows n_k·S_l for layer ``index`` are fewer than its inputs d: their Gram
    statistics are rank-deficient and reveal their samples. Every rank can tell for every client
    (the split comes from the seed), so this needs no message."""
    layer = net.layers[index]
    frac = fed.config.acnnl.local_test_fraction
    rows = {k: len(fed.client_indices[k]) - int(frac * len(fed.client_indices[k])) for k in clients}
    return [k for k in clients if 0 < rows[k] * layer.positions < layer.dim]


def client_accuracy_sums(net: Network, clients: list[Client], weights_of: Callable) -> np.ndarray:
    """[Σ per-client accuracy, Σ correct, Σ count, clients with test rows] over this rank's clients."""
    sums = np.zeros(4)
    for c in clients:
        correct, count = net.accuracy_counts(c.x_test, c.y_test, weights_of(c))
        if count:
            sums += [correct / count, correct, count, 1]
    return sums


def client_accuracies(world: Comm, sums: np.ndarray) -> dict[str, float]:
    """Mean local test accuracy over clients, unweighted and sample-weighted (collective)."""
    with world.stats.label("eval"):
        world.Allreduce(sums)
    if sums[3] == 0:
        return {}
    return {"mean": sums[0] / sums[3], "weighted": sums[1] / sums[2]}


def saved_weights(tree: Tree, count: int) -> list[torch.Tensor]:
    """The first ``count`` layers' weights of a checkpoint subtree, stored as '<i>'."""
    return [torch.as_tensor(tree[str(i)]) for i in range(count)]


def weights_tree(weights: list[torch.Tensor]) -> Tree:
    return {str(i): W for i, W in enumerate(weights)}


class FedACnnL(Algorithm):
    sections = {"fl": AnalyticFLConfig, "acnnl": ACnnLConfig}
    on_device = True

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        validate_federation(config, world_size)
        check_config(config)

    def __init__(self, run: Run):
        super().__init__(run)
        self.fed = Federation(run)
        self.net = Network(run.config, self.fed.data.input_shape, self.fed.data.num_classes, run.device)
        self.clients = local_clients(self.fed, run.device)
        self.fit = LayerwiseFit(self.net, run.world, self.clients, run.config.acnnl)

    @property
    def total_steps(self) -> int:
        return len(self.net)

    def evaluation_due(self, step: int) -> bool:
        return step == self.total_steps

    def progress_due(self, step: int) -> bool:
        return True

    def checkpoint_due(self, step: int) -> bool:
        return self.run.checkpoint_dir is not None

    def fit_layer(self, index: int) -> LayerReport:
        """Collective: fit layer ``index`` (pFedACnnL fits its group models alongside)."""
        return self.fit.fit_layer(index)

    def step(self, step: int) -> dict[str, float]:
        index, stats = step - 1, self.run.world.stats
        mine = exposed_clients(self.fed, self.net, index, self.fed.mine)
        if mine:
            print(
                f"[rank {self.run.world.rank}] privacy warning, layer {step}: clients {mine[:8]}"
                f"{' ...' if len(mine) > 8 else ''} have n_k·S_l < d = {self.net.layers[index].dim}; their Gram "
                f"statistics are rank-deficient and reveal their samples",
                file=sys.stderr,
                flush=True,
            )
        up, down = stats.total(kind="reduce", phase="layer"), stats.total(kind="bcast", phase="layer")
        report = self.fit_layer(index)
        return {
            "train_loss": report.loss,
            "ridge_gamma": report.gamma,
            "condition_number": report.condition,
            "rows": report.rows,
            "eigen_fallback": float(report.method == "eigh"),
            "privacy_exposed_clients": len(exposed_clients(self.fed, self.net, index, range(self.config.fl.clients))),
            "uplink_bytes": (stats.total(kind="reduce", phase="layer") - up).sent_bytes,
            "downlink_bytes": (stats.total(kind="bcast", phase="layer") - down).sent_bytes,
        }

    def evaluate(self) -> dict[str, float]:
        """Global test accuracy (rank 0) and the mean local test accuracy over clients (collective)."""
        row, net, weights = {}, self.net, self.fit.weights
        if self.run.is_root:
            data = self.fed.data
            correct, count = net.accuracy_counts(torch.from_numpy(data.x_test), torch.from_numpy(data.y_test), weights)
            row["test_accuracy"] = correct / count
        acc = client_accuracies(self.run.world, client_accuracy_sums(net, self.clients, lambda c: weights))
        if acc:
            row.update(mean_client_accuracy=acc["mean"], weighted_client_accuracy=acc["weighted"])
        return row

    def state(self) -> State:
        return State(nest("weights", weights_tree(self.fit.weights)))

    def load_state(self, state: State) -> None:
        self.fit.restore(saved_weights(subtree(state.shared, "weights"), self.run.start_step))

    def parameters(self) -> list[torch.Tensor]:
        return self.fit.weights

    def counters(self) -> dict[str, float]:
        last = [c.batches[-1] for c in self.clients if c.batches]
        return {"mean_last_batch": float(np.mean(last)) if last else float("nan")}
