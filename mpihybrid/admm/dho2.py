"""``mpihybrid run dho2``: distributed FOSI, sync or overlapped curvature (see admm.trainer)."""

from mpihybrid.admm.trainer import DHO2_SECTIONS as SECTIONS
from mpihybrid.admm.trainer import run_dho2 as run
from mpihybrid.admm.trainer import validate as _validate
from mpihybrid.config import Config

__all__ = ["SECTIONS", "run", "validate"]


def validate(config: Config, world_size: int) -> None:
    _validate(config, world_size, "dho2")
