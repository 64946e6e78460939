"""The algorithms `mpihybrid run` knows: name -> module with SECTIONS, validate(), run()."""

from __future__ import annotations

import importlib
from types import ModuleType

from mpihybrid.config import COMMON_SECTIONS

MODULES = {
    "dp-adam": "mpihybrid.dp",
    "fosi": "mpihybrid.admm.fosi",
    "dho2": "mpihybrid.admm.dho2",
    "decomfl": "mpihybrid.fl.decomfl",
    "fedavg": "mpihybrid.fl.fedavg",
    "fedzo": "mpihybrid.fl.fedzo",
    "fedacnnl": "mpihybrid.fl.fedacnnl",
    "pfedacnnl": "mpihybrid.fl.pfedacnnl",
}


def load(name: str) -> ModuleType:
    return importlib.import_module(MODULES[name])


def sections(module: ModuleType) -> dict[str, type]:
    return {**COMMON_SECTIONS, **module.SECTIONS}
