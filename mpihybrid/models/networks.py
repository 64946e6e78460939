"""Small models for CPU-sized experiments: an MLP, a 2-D CNN for images, a 1-D CNN for MNIST-1D.

Weights are initialised from the config seed inside a forked torch RNG, so building a model
never touches (or depends on) the global generator.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mpihybrid.config import ModelConfig
from mpihybrid.models.geometry import conv_stages, spatial_dims
from mpihybrid.seeding import derive_seed

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _mlp_layers(widths: list[int], activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return layers


def _mlp(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *_mlp_layers([math.prod(input_shape), *cfg.hidden, num_classes], cfg.activation))


def _cnn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Conv blocks (conv, activation, 2x max-pool where the plan says so), then an MLP head."""
    two_d = spatial_dims(cfg) == 2
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if two_d else (nn.Conv1d, nn.MaxPool1d)
    stages, features = conv_stages(cfg, input_shape)
    layers: list[nn.Module] = []
    for s in stages:
        layers += [conv(s.in_channels, s.out_channels, cfg.kernel_size, padding=cfg.kernel_size // 2)]
        layers += [_ACTIVATIONS[cfg.activation]()]
        if s.pool:
            layers.append(pool(2))
    return nn.Sequential(*layers, nn.Flatten(), *_mlp_layers([features, *cfg.hidden, num_classes], cfg.activation))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """The model named by ``cfg``, initialised identically on every rank from ``seed``."""
    build = _mlp if cfg.name == "mlp" else _cnn
    if build is _cnn:
        conv_stages(cfg, input_shape)  # a wrong input shape is a config error, found before any weight is drawn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model", "init"))
        return build(cfg, input_shape, num_classes)
