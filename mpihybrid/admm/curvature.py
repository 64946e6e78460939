"""The curvature side: top-k (and bottom-ℓ) eigenpairs of the loss Hessian on FOSI's fixed
curvature batch, by Lanczos or block subspace iteration sharded over the curvature
communicator (docs/dho2.md).

The HVPs run on the rank's device (the model's); the eigensolvers' float64 bases and their
projections stay on the host in numpy, so each product copies one float32 vector (or block) to
the device and its float64 result back.

The vectors are split in blocks over the curvature ranks; the HVP is data-parallel over them
(each rank takes its part of the curvature batch; a Reduce_scatter sums the products into the
blocks). With ``fosi.warm_start`` a refresh starts from this side's previous result, which is
therefore part of the checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from mpihybrid.admm.update import FOSIWorkload
from mpihybrid.blocks import blocks
from mpihybrid.comm import Comm
from mpihybrid.models import FlatModel
from mpihybrid.seeding import derive_seed, numpy_rng
from mpihybrid.solvers.hvp import block_hvp, hvp_function
from mpihybrid.solvers.lanczos import lanczos
from mpihybrid.solvers.subspace import subspace_iteration


class Curvature:
    """Collective over the curvature communicator: eigenpairs of the Hessian at a given θ."""

    def __init__(self, work: FOSIWorkload, comm: Comm):
        cfg = work.config
        self.work, self.comm, self.fosi = work, comm, cfg.fosi
        self.weight_decay = cfg.train.weight_decay
        batch = cfg.fosi.curvature_batch or cfg.train.batch_size
        indices = np.sort(numpy_rng(cfg.seed, "curvature-batch").choice(len(work.y_train), batch, replace=False))
        self.indices = indices[blocks(batch, comm.size).slice(comm.rank)]  # this rank's part of the batch
        self.seed = cfg.seed
        self.basis_bytes = 0
        self.previous: np.ndarray | None = None  # this rank's block of the last result's vectors

    def hvp(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The HVP of this rank's part of the fixed curvature batch (built per refresh: buffers move)."""
        flat, x, y = FlatModel(self.work.model), self.work.x_train[self.indices], self.work.y_train[self.indices]
        return hvp_function(lambda theta: flat.loss(theta, x, y, self.weight_decay), self.fosi.hvp)

    def warm_up(self) -> None:
        """One throw-away HVP: torch.func's first call costs about a second, which would
        otherwise delay the first curvature by that much."""
        theta = self.work.theta
        self.hvp()(theta.detach().clone(), torch.zeros_like(theta))

    def compute(self, theta: torch.Tensor, refresh: int) -> tuple[np.ndarray, np.ndarray]:
        """Sharded eigenpairs of the HVP at θ; returns (values, this rank's block of the vectors)."""
        comm, f, n = self.comm, self.fosi, self.work.n
        hvp = self.hvp()
        split = blocks(n, comm.size)
        rows = split.counts[comm.rank]
        theta = theta.detach().clone()

        def on_device(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(theta.device, torch.float32)

        def host64(hv: torch.Tensor) -> np.ndarray:
            return hv.to(torch.float64).cpu().numpy()

        def checked(hv: np.ndarray) -> np.ndarray:
            if not np.isfinite(hv).all():
                raise FloatingPointError("non-finite Hessian-vector product; the curvature was not refreshed")
            return hv

        warm = self.previous if f.warm_start else None
        m, seed = f.iterations(warm is not None), derive_seed(self.seed, "lanczos", refresh)
        with comm.stats.label("lanczos"):
            if f.solver == "subspace":

                def block_matvec(X: np.ndarray) -> np.ndarray:
                    hv = host64(block_hvp(hvp, theta, on_device(X)))
                    mine = np.empty((rows, len(X)))
                    send = np.ascontiguousarray(checked(hv).T / comm.size)  # (n, s): blocks are row ranges
                    comm.Reduce_scatter(send, mine, [c * len(X) for c in split.counts])
                    return mine.T

                start = None if warm is None else warm[len(warm) - f.k :]
                ritz = subspace_iteration(block_matvec, n, f.k, m, seed=seed, comm=comm, start=start)
                s = min(2 * f.k, n)
                self.basis_bytes = (2 * s * rows + s * n + s * s) * 8  # X and A·X blocks, the full block, Gram
            else:
                mine = np.empty(rows)

                def matvec(x: np.ndarray) -> np.ndarray:
                    hv = host64(hvp(theta, on_device(x))) / comm.size
                    comm.Reduce_scatter(checked(hv), mine, split.counts)
                    return mine

                start = None
                if warm is not None:
                    start = np.empty(n)
                    comm.Allgatherv(warm[len(warm) - f.k :].sum(0), start, split.counts)
                ritz = lanczos(matvec, n, m, f.k, f.l, seed=seed, comm=comm, warm=start)
                self.basis_bytes = (m * rows + m**2) * 8
        if not np.isfinite(ritz.values).all():
            raise FloatingPointError(f"non-finite eigenvalues {ritz.values}")
        values, vectors = ritz.values, ritz.vectors
        missing = f.pairs - len(values)
        if missing:  # documented fallback: zero vectors, which take no part in the update
            warnings.warn(
                f"Lanczos broke down after {ritz.iterations} steps with {len(values)} of {f.pairs} "
                f"eigenpairs; the rest are zero vectors",
                RuntimeWarning,
                stacklevel=2,
            )
            values = np.concatenate([np.full(missing, values[0]), values])
            vectors = np.vstack([np.zeros((missing, vectors.shape[1])), vectors])
        if f.warm_start:
            self.previous = vectors
            self.basis_bytes += vectors.nbytes
        return values, vectors

    def state(self) -> dict[str, np.ndarray]:
        return {} if self.previous is None else {"previous": self.previous}

    def load_state(self, tree: dict) -> None:
        if "previous" in tree:
            self.previous = np.asarray(tree["previous"])
