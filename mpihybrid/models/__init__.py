"""Models: the backpropagation networks, their flat-vector views, losses, and the ACnnL network."""

from mpihybrid.models.flat import FlatModel, flatten_parameters
from mpihybrid.models.losses import evaluation_sums, l2_loss
from mpihybrid.models.networks import build_model

__all__ = ["FlatModel", "build_model", "evaluation_sums", "flatten_parameters", "l2_loss"]
