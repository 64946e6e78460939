"""FedACnnL: each layer of an ACnnL network is one distributed least-squares problem
(spec fedacnnl.md §2.2, INFERRED).

For layer l every client streams its rows in mini-batches into float64 sums G = AᵀA and
B = AᵀZ; the ranks add their clients' sums and upload them with one Reduce (upper triangle
of G, B, and two scalars: the row count and ‖Z‖² for the loss). Rank 0 of the communicator
adds γ = acnnl.gamma · tr(G)/dim once, solves by Cholesky and broadcasts W_l; clients
forward one layer and go on. L layers = L reductions. Because G and B are sums over samples,
the weights do not depend on how the samples are split over clients and ranks, nor on the
batch sizes — which is why a slow client may use any batch size (``acnnl.adaptive_batch``).

Every client takes part in the single pass, so [fl] has only ``clients``; nothing of [train]
but ``threads`` applies.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mpihybrid.comm import Comm
from mpihybrid.config import Config, require
from mpihybrid.fl.acnnl import ACnnLConfig, Network, check_config
from mpihybrid.fl.common import Federation, validate_federation
from mpihybrid.harness import Run
from mpihybrid.seeding import numpy_rng
from mpihybrid.solvers.least_squares import GramAccumulator, SolveError, ridge_scale, ridge_solve


@dataclass
class AnalyticFLConfig:
    clients: int = 8  # virtual clients, spread over the ranks (M >> ranks is fine)

    def check(self) -> None:
        require(self.clients >= 1, "fl.clients", f"must be >= 1, got {self.clients}")


SECTIONS = {"fl": AnalyticFLConfig, "acnnl": ACnnLConfig}


def validate(config: Config, world_size: int) -> None:
    validate_federation(config, world_size)
    check_config(config)


@dataclass
class Client:
    """One virtual client's rows: its local training split and its own held-out test split."""

    index: int
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    batches: list[int] = field(default_factory=list)  # batch size chosen per layer (adaptive mode)


def local_clients(fed: Federation) -> list[Client]:
    """This rank's clients, each split into local train / local test from (seed, client)."""
    frac = fed.config.acnnl.local_test_fraction
    out = []
    for k in fed.mine:
        idx = fed.client_indices[k]
        order = numpy_rng(fed.config.seed, "local-test", k).permutation(len(idx)) if frac else np.arange(len(idx))
        n_test = int(frac * len(idx))
        train, test = torch.from_numpy(np.sort(idx[order[n_test:]])), torch.from_numpy(np.sort(idx[order[:n_test]]))
        out.append(Client(k, fed.x_train[train], fed.y_train[train], fed.x_train[test], fed.y_train[test]))
    return out


@dataclass
class LayerReport:
    """What the solving rank learned about one layer (only meaningful on that rank)."""

    rows: int = 0
    gamma: float = 0.0
    condition: float = 0.0
    loss: float = 0.0  # ‖AW − Z‖²/rows (without the ridge term)
    method: str = ""  # "cholesky", or "eigh" for the minimum-norm fallback


def stream(
    net: Network,
    index: int,
    H: torch.Tensor,
    y: torch.Tensor,
    acc: GramAccumulator,
    batch: int,
    seconds: float | None = None,
) -> int:
    """Add a client's rows for layer ``index`` to ``acc``, one mini-batch of patches at a time.

    With ``seconds`` set (adaptive batches), each next batch is sized from the speed measured on
    the previous one so that a batch takes about that long. Returns the last batch size used.
    """
    i = 0
    while i < len(y):
        t = time.perf_counter()
        acc.add(net.inputs(index, H[i : i + batch]), net.targets(index, y[i : i + batch]))
        done = min(batch, len(y) - i)
        i += done
        if seconds is not None:
            batch = max(1, int(seconds * done / max(time.perf_counter() - t, 1e-9)))
    return batch


def residual(G: np.ndarray, B: np.ndarray, W: np.ndarray, z_sq: float, rows: int) -> float:
    """‖AW − Z‖²/rows from the sums alone: (tr(WᵀGW) − 2 tr(WᵀB) + ‖Z‖²)/rows."""
    return float((np.sum(W * (G @ W)) - 2 * np.sum(W * B) + z_sq) / max(rows, 1))


class LayerwiseFit:
    """FedACnnL over one communicator for this rank's clients in it: cached layer inputs,
    solved weights, one Reduce + one Bcast per layer."""

    def __init__(self, net: Network, comm: Comm, clients: list[Client], config: ACnnLConfig, warn_privacy: bool = True):
        self.net, self.comm, self.clients, self.config = net, comm, clients, config
        self.warn_privacy = warn_privacy
        self.weights: list[torch.Tensor] = []
        self.H = {c.index: net.prepare(c.x) for c in clients}

    def restore(self, weights: list[torch.Tensor]) -> None:
        """Continue after ``weights`` (from a checkpoint): recompute the cached inputs."""
        self.weights = list(weights)
        self.H = {c.index: self.net.features(self.net.prepare(c.x), self.weights) for c in self.clients}

    def _privacy_check(self, index: int) -> None:
        layer = self.net.layers[index]
        exposed = [c.index for c in self.clients if 0 < len(c.y) * layer.positions < layer.dim]
        if exposed:
            print(
                f"[rank {self.comm.rank}] privacy warning, layer {index + 1}: clients {exposed[:8]}"
                f"{' ...' if len(exposed) > 8 else ''} have n_k·S_l < d = {layer.dim}; their Gram statistics "
                f"are rank-deficient and reveal their samples",
                file=sys.stderr,
                flush=True,
            )

    def fit_layer(self, index: int) -> LayerReport:
        """Collective over the fit's communicator: solve layer ``index`` and forward the caches."""
        net, layer = self.net, self.net.layers[index]
        if self.warn_privacy:
            self._privacy_check(index)
        acc = GramAccumulator(layer.dim, layer.out)
        seconds = self.config.batch_seconds if self.config.adaptive_batch else None
        for c in self.clients:
            c.batches.append(stream(net, index, self.H[c.index], c.y, acc, self.config.batch_size, seconds))
        upload = acc.packed()
        W = np.empty((layer.dim, layer.out), dtype=np.float64)
        report = LayerReport()
        with self.comm.stats.label("layer"):
            self.comm.Reduce(upload, root=0)
            if self.comm.rank == 0:
                total = GramAccumulator.unpack(upload, layer.dim, layer.out)
                G, B = total.G.numpy(), total.B.numpy()
                gamma = ridge_scale(G, self.config.gamma)
                try:
                    solution = ridge_solve(G, B, gamma)
                except SolveError as exc:
                    raise SolveError(f"layer {index + 1} ({layer.kind}, d = {layer.dim}): {exc}") from None
                W[:] = solution.W
                report = LayerReport(
                    total.n, gamma, solution.condition, residual(G, B, solution.W, total.z_sq, total.n), solution.method
                )
            self.comm.Bcast(W, root=0)
        Wt = torch.from_numpy(W)
        self.weights.append(Wt)
        for c in self.clients:
            self.H[c.index] = net.features(self.H[c.index], [Wt], start=index)
        return report


def client_accuracy_sums(net: Network, clients: list[Client], weights_of) -> np.ndarray:
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


def saved_weights(tree: dict, prefix: str, count: int) -> list[torch.Tensor]:
    """The first ``count`` layers' weights of a checkpoint tree, stored as '<prefix><i>'."""
    return [torch.as_tensor(tree[f"{prefix}{i}"]) for i in range(count)]


def run_layers(
    run: Run,
    layers: int,
    fit_layer: Callable[[int], LayerReport],
    evaluate: Callable[[], dict],
    checkpoint_state: Callable[[], tuple[dict, dict]],
) -> None:
    """The layer loop FedACnnL and pFedACnnL share: one step per layer, bytes measured per
    layer, evaluation after the last, a checkpoint after every layer (resume: the next one)."""
    stats = run.world.stats

    def sent(kind: str) -> int:
        return stats.total(kind=kind, phase="layer").sent_bytes

    for index in range(run.start_step, layers):
        step = index + 1
        run.step_hook(step)
        up, down = sent("reduce"), sent("bcast")
        report = fit_layer(index)
        row = {
            "wall_time": run.elapsed(),
            "train_loss": report.loss,
            "ridge_gamma": report.gamma,
            "condition_number": report.condition,
            "rows": report.rows,
            "eigen_fallback": float(report.method == "eigh"),
            "uplink_bytes": sent("reduce") - up,
            "downlink_bytes": sent("bcast") - down,
        }
        if step == layers:
            row.update(evaluate())
        run.results.log(step, **row)
        run.progress(step, layers, loss=report.loss, cond=report.condition)
        if run.checkpoint_dir is not None:
            run.save(step, *checkpoint_state())


def run(run: Run) -> None:
    fed = Federation(run)
    run.set_threads()
    net = Network(run.config, fed.data.input_shape, fed.data.num_classes)
    clients = local_clients(fed)
    fit = LayerwiseFit(net, run.world, clients, run.config.acnnl)
    if run.resumed is not None:
        fit.restore(saved_weights(run.resumed.state.shared, "weights/", run.start_step))
    run_layers(
        run,
        len(net),
        fit.fit_layer,
        lambda: evaluate(run, fed, net, clients, fit.weights),
        lambda: ({f"weights/{i}": W for i, W in enumerate(fit.weights)}, {}),
    )
    last = [c.batches[-1] for c in clients if c.batches]
    run.finish(fit.weights, per_rank={"mean_last_batch": float(np.mean(last)) if last else float("nan")})


def evaluate(
    run: Run, fed: Federation, net: Network, clients: list[Client], weights: list[torch.Tensor]
) -> dict[str, float]:
    """Global test accuracy (rank 0) and the mean local test accuracy over clients (collective)."""
    row = {}
    if run.is_root:
        correct, count = net.accuracy_counts(
            torch.from_numpy(fed.data.x_test), torch.from_numpy(fed.data.y_test), weights
        )
        row["test_accuracy"] = correct / count
    acc = client_accuracies(run.world, client_accuracy_sums(net, clients, lambda c: weights))
    if acc:
        row.update(mean_client_accuracy=acc["mean"], weighted_client_accuracy=acc["weighted"])
    return row
