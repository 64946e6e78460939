"""One ACnnL network fitted layer by layer as distributed least squares over one communicator
(docs/fedacnnl.md).

For layer l every client streams its rows in mini-batches into float64 sums G = AᵀA and
B = AᵀZ; the ranks add their clients' sums and upload them with one Reduce (upper triangle
of G, B, and two scalars: the row count and ‖Z‖² for the loss). Rank 0 of the communicator
adds γ = acnnl.gamma · tr(G)/dim once, solves by Cholesky and broadcasts W_l; clients
forward one layer and go on. L layers = L reductions. Because G and B are sums over samples,
the weights do not depend on how the samples are split over clients and ranks, nor on the
batch sizes — which is why a slow client may use any batch size (``acnnl.adaptive_batch``).

Layer inputs, sums, solve and weights live on the device of the network (``Network.device``);
the packed upload crosses to the host for the Reduce (docs/gpu.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from mpihybrid.comm import Comm
from mpihybrid.models.acnnl import ACnnLConfig, Network
from mpihybrid.solvers.least_squares import GramAccumulator, SolveError, ridge_scale, ridge_solve


@dataclass
class Client:
    """One virtual client's rows: its local training split and its own held-out test split."""

    index: int
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    batches: list[int] = field(default_factory=list)  # batch size chosen per layer (adaptive mode)


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
    the previous one so that a batch takes about that long (on a GPU the clock waits for the
    batch's kernels; timing their launch alone would grow the batch without bound). Returns the
    last batch size used.
    """
    i = 0
    while i < len(y):
        t = time.perf_counter()
        acc.add(net.inputs(index, H[i : i + batch]), net.targets(index, y[i : i + batch]))
        if seconds is not None and H.is_cuda:
            torch.cuda.synchronize(H.device)
        done = min(batch, len(y) - i)
        i += done
        if seconds is not None:
            batch = max(1, int(seconds * done / max(time.perf_counter() - t, 1e-9)))
    return batch


def residual(G: torch.Tensor, B: torch.Tensor, W: torch.Tensor, z_sq: float, rows: int) -> float:
    """‖AW − Z‖²/rows from the sums alone: (tr(WᵀGW) − 2 tr(WᵀB) + ‖Z‖²)/rows."""
    return float((torch.sum(W * (G @ W)) - 2 * torch.sum(W * B) + z_sq) / max(rows, 1))


class LayerwiseFit:
    """FedACnnL over one communicator for this rank's clients in it: cached layer inputs,
    solved weights, one Reduce + one Bcast per layer."""

    def __init__(self, net: Network, comm: Comm, clients: list[Client], config: ACnnLConfig):
        self.net, self.comm, self.clients, self.config = net, comm, clients, config
        self.weights: list[torch.Tensor] = []
        self.H = {c.index: net.prepare(c.x) for c in clients}

    def restore(self, weights: list[torch.Tensor]) -> None:
        """Continue after ``weights`` (from a checkpoint's host copies): recompute the cached inputs."""
        self.weights = [W.to(self.net.device) for W in weights]
        self.H = {c.index: self.net.features(self.net.prepare(c.x), self.weights) for c in self.clients}

    def fit_layer(self, index: int) -> LayerReport:
        """Collective over the fit's communicator: solve layer ``index`` and forward the caches."""
        net, layer = self.net, self.net.layers[index]
        acc = GramAccumulator(layer.dim, layer.out, device=net.device)
        seconds = self.config.batch_seconds if self.config.adaptive_batch else None
        for c in self.clients:
            c.batches.append(stream(net, index, self.H[c.index], c.y, acc, self.config.batch_size, seconds))
        upload = acc.packed()
        W = torch.empty(layer.dim, layer.out, dtype=torch.float64, device=net.device)
        report = LayerReport()
        with self.comm.stats.label("layer"):
            self.comm.Reduce(upload, root=0)
            if self.comm.rank == 0:
                total = GramAccumulator.unpack(upload, layer.dim, layer.out, net.device)
                G, B = total.G, total.B
                gamma = ridge_scale(G, self.config.gamma)
                try:
                    solution = ridge_solve(G, B, gamma)
                except SolveError as exc:
                    raise SolveError(f"layer {index + 1} ({layer.kind}, d = {layer.dim}): {exc}") from None
                W.copy_(solution.W)
                loss = residual(G, B, solution.W, total.z_sq, total.n)
                report = LayerReport(total.n, gamma, solution.condition, loss, solution.method)
            self.comm.Bcast(W, root=0)
        self.weights.append(W)
        for c in self.clients:
            self.H[c.index] = net.features(self.H[c.index], [W], start=index)
        return report
