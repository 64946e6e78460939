"""The algorithms `mpihybrid run` knows, in one table: name -> the `Algorithm` class."""

from __future__ import annotations

import importlib

from mpihybrid.config import COMMON_SECTIONS

ALGORITHMS = {
    "dp-adam": "mpihybrid.dp:DataParallel",
    "fosi": "mpihybrid.admm.modes:FOSI",
    "dho2": "mpihybrid.admm.modes:DHO2",
    "decomfl": "mpihybrid.fl.decomfl:DeComFL",
    "fedavg": "mpihybrid.fl.fedavg:FedAvg",
    "fedzo": "mpihybrid.fl.fedzo:FedZO",
    "fedacnnl": "mpihybrid.fl.fedacnnl:FedACnnL",
    "pfedacnnl": "mpihybrid.fl.pfedacnnl:PFedACnnL",
}


def load(name: str) -> type:
    """The `Algorithm` subclass of ``name`` (imported on demand: the CLI starts without torch)."""
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def sections(algorithm: type) -> dict[str, type]:
    return {**COMMON_SECTIONS, **algorithm.sections}
