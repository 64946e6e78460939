"""Small models for CPU-sized experiments: an MLP, a 2-D CNN for images, a 1-D CNN for MNIST-1D.

Weights are initialised from the config seed inside a forked torch RNG, so building a model
never touches (or depends on) the global generator.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mpihybrid.config import ModelConfig
from mpihybrid.errors import ConfigError
from mpihybrid.seeding import derive_seed

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _mlp_layers(widths: list[int], activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return layers


def mlp(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *_mlp_layers([math.prod(input_shape), *cfg.hidden, num_classes], cfg.activation))


def _cnn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, dims: int) -> nn.Module:
    """Conv blocks (conv, activation, 2x max-pool while the signal is long enough), then an MLP head."""
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    pool = nn.MaxPool2d if dims == 2 else nn.MaxPool1d
    channels, *spatial = input_shape
    layers: list[nn.Module] = []
    for out in cfg.channels:
        layers += [conv(channels, out, cfg.kernel_size, padding=cfg.kernel_size // 2), _ACTIVATIONS[cfg.activation]()]
        if min(spatial) >= 4:
            layers.append(pool(2))
            spatial = [s // 2 for s in spatial]
        channels = out
    flat = channels * math.prod(spatial)
    return nn.Sequential(*layers, nn.Flatten(), *_mlp_layers([flat, *cfg.hidden, num_classes], cfg.activation))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """The model named by ``cfg``, initialised identically on every rank from ``seed``."""
    if cfg.name in ("cnn2d", "cnn1d"):
        dims = 2 if cfg.name == "cnn2d" else 1
        if len(input_shape) != dims + 1:
            raise ConfigError(
                "model.name",
                f"'{cfg.name}' needs inputs shaped (C, {'H, W' if dims == 2 else 'L'}); "
                f"the data set gives {input_shape}",
            )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model", "init"))
        if cfg.name == "mlp":
            return mlp(cfg, input_shape, num_classes)
        return _cnn(cfg, input_shape, num_classes, 2 if cfg.name == "cnn2d" else 1)


def flatten_parameters(params: list[nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-seat the parameters and their gradients as views into one flat float32 vector each,
    so optimizers and collectives see θ and ∇ as vectors without copies. Returns (θ, grad)."""
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    grad = torch.zeros_like(theta)
    offset = 0
    for p in params:
        p.data = theta[offset : offset + p.numel()].view_as(p)
        p.grad = grad[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return theta, grad


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def l2_loss(model: nn.Module, logits: torch.Tensor, y: torch.Tensor, weight_decay: float) -> torch.Tensor:
    """Cross-entropy plus (weight_decay / 2)·‖θ‖² in the loss, so curvature methods see the L2 term."""
    loss = nn.functional.cross_entropy(logits, y)
    if weight_decay:
        loss = loss + 0.5 * weight_decay * sum((p * p).sum() for p in model.parameters())
    return loss


@torch.no_grad()
def evaluation_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> tuple[float, float, int]:
    """(sum of cross-entropy, number correct, count) over ``x``: sums so ranks can add them."""
    loss_sum, correct = 0.0, 0.0
    for i in range(0, len(y), batch):
        logits = model(x[i : i + batch])
        loss_sum += float(nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum"))
        correct += float((logits.argmax(1) == y[i : i + batch]).sum())
    return loss_sum, correct, len(y)
