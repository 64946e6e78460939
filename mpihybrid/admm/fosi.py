"""``mpihybrid run fosi``: FOSI on one process (the trainer is shared with DHO2)."""

from mpihybrid.admm.trainer import FOSI_SECTIONS as SECTIONS
from mpihybrid.admm.trainer import run_fosi as run
from mpihybrid.admm.trainer import validate as _validate
from mpihybrid.config import Config

__all__ = ["SECTIONS", "run", "validate"]


def validate(config: Config, world_size: int) -> None:
    _validate(config, world_size, "fosi")
