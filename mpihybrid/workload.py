"""The data and the model a data-parallel rank trains (dp-adam, FOSI/DHO2), on the rank's device."""

from __future__ import annotations

import torch

from mpihybrid.config import Config
from mpihybrid.data import load_dataset
from mpihybrid.models import build_model, flatten_parameters


class Workload:
    """A rank's data set and model, the training tensors and the model moved once to ``device``:
    θ and its gradient are one flat vector each, with the model's parameters as views into them
    (so one Allreduce or Reduce_scatter covers the whole gradient)."""

    def __init__(self, config: Config, device: torch.device):
        self.config, self.device = config, device
        self.data = load_dataset(config.data, config.seed)
        self.x_train = torch.from_numpy(self.data.x_train).to(device)
        self.y_train = torch.from_numpy(self.data.y_train).to(device)
        self.model = build_model(config.model, self.data.input_shape, self.data.num_classes, config.seed).to(device)
        self.params = list(self.model.parameters())
        self.theta, self.grad = flatten_parameters(self.params)
        self.n = self.theta.numel()
