"""The [fosi] and [dho2] config sections and the checks that need the world size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mpihybrid.admm.rule import ADMMConfig
from mpihybrid.config import Config, require
from mpihybrid.solvers.fosi import Base
from mpihybrid.solvers.hvp import HVPMethod


@dataclass
class FOSIConfig:
    base: Base = "adam"  # base optimizer; its lr is train.lr, heavy-ball's momentum train.momentum
    k: int = 10  # top eigenpairs
    l: int = 0  # bottom eigenpairs
    lanczos_steps: int = 0  # m; 0 = 4(k + ℓ) as in FOSI's code
    refresh_every: int = 100  # T: steps between curvature refreshes
    warmup: int = 0  # W: step of the first refresh; 0 = T
    alpha: float = 0.01  # Newton step size α
    decay: float = 0.9  # β of the curvature-part momentum
    clip_max: float = 3.0  # c_max (FOSI-Adam always uses 1)
    curvature_batch: int = 0  # samples of the fixed curvature batch; 0 = train.batch_size
    hvp: HVPMethod = "forward-over-reverse"
    solver: Literal["lanczos", "subspace"] = "lanczos"  # subspace: block iteration with vmapped HVPs
    subspace_sweeps: int = 8  # q: block products per refresh (plus one for Rayleigh–Ritz)
    warm_start: bool = False  # start each refresh from the previous refresh's top eigenvectors
    warm_lanczos_steps: int = 0  # m of a warm-started refresh; 0 = lanczos_steps
    warm_subspace_sweeps: int = 0  # q of a warm-started refresh; 0 = subspace_sweeps

    def check(self) -> None:
        require(self.k >= 1, "fosi.k", f"must be >= 1, got {self.k}")
        require(self.l >= 0, "fosi.l", f"must be >= 0, got {self.l}")
        require(
            self.lanczos_steps == 0 or self.lanczos_steps >= self.k + self.l,
            "fosi.lanczos_steps",
            f"{self.lanczos_steps} Lanczos steps cannot give k + ℓ = {self.k + self.l} eigenpairs",
        )
        require(
            self.warm_lanczos_steps == 0 or self.warm_lanczos_steps >= self.k + self.l,
            "fosi.warm_lanczos_steps",
            f"{self.warm_lanczos_steps} Lanczos steps cannot give k + ℓ = {self.k + self.l} eigenpairs",
        )
        require(self.subspace_sweeps >= 1, "fosi.subspace_sweeps", f"must be >= 1, got {self.subspace_sweeps}")
        require(self.warm_subspace_sweeps >= 0, "fosi.warm_subspace_sweeps", "must be >= 0")
        require(
            self.solver == "lanczos" or self.l == 0,
            "fosi.l",
            "the subspace solver finds top eigenpairs only; use solver = 'lanczos' for ℓ > 0",
        )
        require(self.refresh_every >= 1, "fosi.refresh_every", f"T must be >= 1, got {self.refresh_every}")
        require(self.warmup >= 0, "fosi.warmup", f"must be >= 0, got {self.warmup}")
        require(self.alpha > 0, "fosi.alpha", f"must be > 0, got {self.alpha}")
        require(0 <= self.decay < 1, "fosi.decay", f"must be in [0, 1), got {self.decay}")
        require(self.clip_max >= 1, "fosi.clip_max", f"must be >= 1, got {self.clip_max}")
        require(self.curvature_batch >= 0, "fosi.curvature_batch", "must be >= 0")

    @property
    def lanczos_iterations(self) -> int:
        """m, the Lanczos iterations per refresh (not to be confused with train.steps)."""
        return self.lanczos_steps or 4 * (self.k + self.l)

    def iterations(self, warm: bool) -> int:
        """Lanczos steps m, or subspace sweeps q, of one refresh (the warm ones when it starts
        from the previous refresh's eigenvectors)."""
        if self.solver == "subspace":
            return (self.warm_subspace_sweeps or self.subspace_sweeps) if warm else self.subspace_sweeps
        return (self.warm_lanczos_steps or self.lanczos_iterations) if warm else self.lanczos_iterations

    @property
    def pairs(self) -> int:
        """r = k + ℓ eigenpairs per refresh."""
        return self.k + self.l

    @property
    def first(self) -> int:
        """W, the step of the first refresh."""
        return self.warmup or self.refresh_every


@dataclass
class DHO2Config:
    mode: Literal["sync", "overlap"] = "overlap"
    curvature_ranks: int = 1  # overlap: ranks in the curvature group C; the others update (U)
    pickup: Literal["probe", "fixed"] = "probe"
    pickup_delay: int = 0  # fixed: install exactly this many steps after the snapshot (>= 1)

    def check(self) -> None:
        require(self.curvature_ranks >= 1, "dho2.curvature_ranks", f"must be >= 1, got {self.curvature_ranks}")
        require(
            self.pickup == "probe" or self.pickup_delay >= 1,
            "dho2.pickup_delay",
            "pickup = 'fixed' needs pickup_delay >= 1 (steps between snapshot and install)",
        )


FOSI_SECTIONS = {"fosi": FOSIConfig, "admm": ADMMConfig}
DHO2_SECTIONS = {**FOSI_SECTIONS, "dho2": DHO2Config}


def overlapped(config: Config) -> bool:
    """True when the run splits the world into an update and a curvature group."""
    return "dho2" in config.sections and config.dho2.mode == "overlap"


def check_split(config: Config, world_size: int) -> None:
    """The batches must split evenly over the ranks that update and those that compute curvature."""
    if overlapped(config):
        require(world_size >= 2, "dho2.mode", "overlap needs at least 2 ranks (an update and a curvature group)")
        require(
            config.dho2.curvature_ranks < world_size,
            "dho2.curvature_ranks",
            f"{config.dho2.curvature_ranks} curvature ranks leave no update rank in a world of {world_size}",
        )
        update, curvature = world_size - config.dho2.curvature_ranks, config.dho2.curvature_ranks
    else:
        update = curvature = world_size
    require(
        config.train.batch_size % update == 0,
        "train.batch_size",
        f"{config.train.batch_size} does not split evenly over {update} update ranks",
    )
    batch = config.fosi.curvature_batch or config.train.batch_size
    require(batch % curvature == 0, "fosi.curvature_batch", f"{batch} does not split evenly over {curvature} ranks")
