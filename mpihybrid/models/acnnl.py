"""ACnnL: a network trained layer by layer in closed form (arXiv 2502.06915; docs/fedacnnl.md, "ACnnL network").

Layer l sees A_l (its input with a bias column; for a conv layer the im2col patch rows of
each output position, built per mini-batch with ``unfold``) and a target Z_l = σ⁻¹(Y Q_l):
the one-hot labels projected by a fixed random Q_l drawn from the shared seed, scaled into
[−τ, τ] so σ⁻¹ stays finite. Its weights solve min ‖A_l W − Z_l‖² + γ‖W‖². The classifier
(last layer) targets Y itself and predicts argmax(A_L W_L).

Everything runs in float64: the weights are least-squares solutions, and float32 forwards
would round differently for different batchings, which breaks partition invariance.
This module knows one network; who owns which rows is the business of `fl.fedacnnl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mpihybrid.config import Config, ModelConfig, require
from mpihybrid.errors import ConfigError
from mpihybrid.models.geometry import conv_stages, spatial_dims
from mpihybrid.seeding import numpy_rng

MAX_GRAM_DIM = 8192  # a d×d float64 Gram of 512 MiB; wider layers are refused, not swapped


@dataclass
class ACnnLConfig:
    gamma: float = 1e-3  # ridge γ relative to tr(G)/dim; added once, at the solve
    tau: float = 0.9  # pseudo-labels are scaled into [−τ, τ]
    projection: Literal["uniform", "gaussian", "orthonormal"] = "uniform"  # the label encoders Q_l
    batch_size: int = 256  # samples per streamed mini-batch (the weights do not depend on it)
    adaptive_batch: bool = False  # per-client batch from its measured speed (straggler handling)
    batch_seconds: float = 0.02  # adaptive_batch: target seconds per mini-batch
    local_test_fraction: float = 0.2  # each client's own held-out share, for mean client accuracy

    def check(self) -> None:
        require(self.gamma >= 0, "acnnl.gamma", f"must be >= 0, got {self.gamma}")
        require(self.tau > 0, "acnnl.tau", f"must be > 0, got {self.tau}")
        require(self.batch_size >= 1, "acnnl.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.batch_seconds > 0, "acnnl.batch_seconds", f"must be > 0, got {self.batch_seconds}")
        require(
            0 <= self.local_test_fraction < 1,
            "acnnl.local_test_fraction",
            f"must be in [0, 1), got {self.local_test_fraction}",
        )


@dataclass(frozen=True)
class Layer:
    kind: Literal["conv", "fc", "classifier"]
    dim: int  # columns of A (inputs + bias)
    out: int  # columns of Z
    kernel: tuple[int, int] = (1, 1)
    pool: bool = False
    positions: int = 1  # rows of A per sample (S_l; 1 for fc layers)


def _activation_pair(name: str) -> tuple:
    if name == "tanh":
        return torch.tanh, torch.atanh
    if name == "relu":
        return torch.relu, (lambda t: t)  # Z = T for a ReLU network (docs/fedacnnl.md, "Label encoders and targets")
    raise ConfigError("model.activation", f"ACnnL needs an invertible activation (tanh or relu), got '{name}'")


def plan_layers(model: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> list[Layer]:
    """The layer list for [model]: conv layers (cnn2d/cnn1d), then hidden fc layers, then the classifier."""
    layers: list[Layer] = []
    if model.name == "mlp":
        features = math.prod(input_shape)
    else:
        kernel = (model.kernel_size, model.kernel_size) if spatial_dims(model) == 2 else (1, model.kernel_size)
        stages, features = conv_stages(model, input_shape)
        for s in stages:
            dim = s.in_channels * kernel[0] * kernel[1] + 1
            layers.append(Layer("conv", dim, s.out_channels, kernel, s.pool, math.prod(s.spatial)))
    for width in model.hidden:
        layers.append(Layer("fc", features + 1, width))
        features = width
    layers.append(Layer("classifier", features + 1, num_classes))
    for i, layer in enumerate(layers):
        if layer.dim > MAX_GRAM_DIM:
            key = "model.channels" if layer.kind == "conv" or (i and layers[i - 1].kind == "conv") else "model.hidden"
            raise ConfigError(
                key,
                f"layer {i + 1} ({layer.kind}) has {layer.dim} inputs; its Gram matrix would need "
                f"{layer.dim**2 * 8 / 2**30:.1f} GiB (limit {MAX_GRAM_DIM} inputs)",
            )
    return layers


def check_config(config: Config) -> None:
    """Cross-key checks that need no data: the activation and the range of the pseudo-labels."""
    _activation_pair(config.model.activation)
    if config.model.activation == "tanh":
        require(
            config.acnnl.tau < 1,
            "acnnl.tau",
            f"pseudo-labels for tanh must lie in (−1, 1): "
            f"τ = {config.acnnl.tau} puts them outside the activation's range",
        )


def label_encoder(seed: int, index: int, classes: int, width: int, kind: str, tau: float) -> np.ndarray:
    """Q_l ∈ R^{C×c_l}, from the shared seed; scaled so every pseudo-label lies in [−τ, τ]."""
    rng = numpy_rng(seed, "acnnl-labels", index)
    if kind == "uniform":
        Q = rng.uniform(-1.0, 1.0, (classes, width))
    else:
        Q = rng.standard_normal((classes, width))
        if kind == "orthonormal":  # orthonormal rows when width >= classes, else orthonormal columns
            q, _ = np.linalg.qr(Q.T if width >= classes else Q)
            Q = q.T if width >= classes else q
    return Q * (tau / np.abs(Q).max())


class Network:
    """The layers, label encoders and activation of one ACnnL network; weights are passed in."""

    def __init__(
        self, config: Config, input_shape: tuple[int, ...], num_classes: int, device: torch.device | str = "cpu"
    ):
        self.layers = plan_layers(config.model, input_shape, num_classes)
        self.num_classes = num_classes
        self.device = torch.device(device)  # where its inputs, targets and weights live
        self.act, inverse = _activation_pair(config.model.activation)
        self.spatial = config.model.name != "mlp"
        a = config.acnnl
        self.encoders = [
            torch.from_numpy(label_encoder(config.seed, i, num_classes, layer.out, a.projection, a.tau)).to(device)
            for i, layer in enumerate(self.layers[:-1])
        ]
        # σ⁻¹ per class, once: elementwise kernels round a 1-row batch differently from a long one
        # (vectorised vs scalar tails), and the targets must not depend on the batch size.
        self.class_targets = [inverse(Q) for Q in self.encoders]

    def __len__(self) -> int:
        return len(self.layers)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw samples -> H_0 in float64 on the network's device: (N, C, H, W) for conv networks
        (1-D signals get H = 1), else (N, F)."""
        x = x.to(self.device, torch.float64)
        if not self.spatial:
            return x.reshape(len(x), -1)
        return x if x.dim() == 4 else x.unsqueeze(2)

    def inputs(self, index: int, H: torch.Tensor) -> torch.Tensor:
        """A_l for a batch of layer inputs: rows are samples (fc) or sample×position patches (conv)."""
        layer = self.layers[index]
        if layer.kind == "conv":
            kh, kw = layer.kernel
            cols = F.unfold(H, layer.kernel, padding=(kh // 2, kw // 2))  # (N, C·kh·kw, S)
            rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        else:
            rows = H.reshape(len(H), -1)
        return torch.cat([rows, torch.ones(len(rows), 1, dtype=rows.dtype, device=rows.device)], dim=1)

    def targets(self, index: int, y: torch.Tensor) -> torch.Tensor:
        """Z_l for a batch of labels, one row per row of A_l."""
        layer = self.layers[index]
        if layer.kind == "classifier":
            return F.one_hot(y, self.num_classes).to(torch.float64)
        Z = self.class_targets[index][y]
        return Z.repeat_interleave(layer.positions, dim=0) if layer.positions > 1 else Z

    def forward(self, index: int, H: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """H_{l} = pool(σ(A_l W_l)) folded back to (N, c, h, w) for conv layers; logits for the classifier."""
        layer = self.layers[index]
        out = self.inputs(index, H) @ W
        if layer.kind == "classifier":
            return out
        out = self.act(out)
        if layer.kind == "conv":
            n, h, w = len(H), H.shape[2], H.shape[3]
            out = out.reshape(n, h, w, layer.out).permute(0, 3, 1, 2)
            if layer.pool:
                out = F.max_pool2d(out, (2, 2) if h > 1 else (1, 2))
        return out.contiguous()

    def features(self, H: torch.Tensor, weights: list[torch.Tensor], start: int = 0, batch: int = 1024) -> torch.Tensor:
        """H after layers start, start+1, ... with the given weights, computed in batches."""
        parts = []
        for i in range(0, len(H), batch):
            h = H[i : i + batch]
            for index, W in enumerate(weights, start):
                h = self.forward(index, h, W)
            parts.append(h)
        return torch.cat(parts) if parts else H

    def accuracy_counts(self, x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor]) -> tuple[int, int]:
        """(correct, count) of the full network on raw samples."""
        if len(y) == 0:
            return 0, 0
        logits = self.features(self.prepare(x), weights)
        return int((logits.argmax(1) == y.to(self.device)).sum()), len(y)
