"""The shape of a CNN from [model]: which conv stages there are, what size of signal each
sees, where it pools, and how many features reach the head. Backpropagation CNNs and ACnnL
networks are built from the same plan, so their geometry cannot drift apart."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpihybrid.config import ModelConfig
from mpihybrid.errors import ConfigError


@dataclass(frozen=True)
class ConvStage:
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]  # the stage's input size: (H, W) for cnn2d, (L,) for cnn1d
    pool: bool  # a 2x max-pool follows the activation (while the signal is at least 4 long)


def spatial_dims(model: ModelConfig) -> int:
    """1 for cnn1d, 2 for cnn2d, 0 for the MLP."""
    return {"cnn1d": 1, "cnn2d": 2}.get(model.name, 0)


def check_input_shape(model: ModelConfig, input_shape: tuple[int, ...]) -> None:
    dims = spatial_dims(model)
    if dims and len(input_shape) != dims + 1:
        axes = "H, W" if dims == 2 else "L"
        raise ConfigError(
            "model.name", f"'{model.name}' needs inputs shaped (C, {axes}); the data set gives {input_shape}"
        )


def conv_stages(model: ModelConfig, input_shape: tuple[int, ...]) -> tuple[list[ConvStage], int]:
    """The conv stages for ``input_shape`` (C, *spatial) and the flat feature count after them."""
    check_input_shape(model, input_shape)
    channels, *spatial = input_shape
    stages = []
    for out in model.channels:
        pool = min(spatial) >= 4
        stages.append(ConvStage(channels, out, tuple(spatial), pool))
        if pool:
            spatial = [s // 2 for s in spatial]
        channels = out
    return stages, channels * math.prod(spatial)
