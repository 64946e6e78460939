"""The training loss (cross-entropy plus L2 inside the loss) and evaluation sums."""

from __future__ import annotations

import torch
from torch import nn


def l2_loss(logits: torch.Tensor, y: torch.Tensor, weight_decay: float, params) -> torch.Tensor:
    """Cross-entropy plus (weight_decay / 2)·‖θ‖² in the loss, so curvature methods see the L2 term.
    ``params`` is an iterable of the parameter tensors (or one flat vector)."""
    loss = nn.functional.cross_entropy(logits, y)
    if weight_decay:
        loss = loss + 0.5 * weight_decay * sum((p * p).sum() for p in params)
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
