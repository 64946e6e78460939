"""FOSI and DHO2 training runs (``mpihybrid run fosi|dho2``; spec dho2_fosi.md §1–2).

Update ranks train data-parallel, each holding only its block of θ's optimizer state, of the
FOSI momentum, of the ADMM dual and anchor, and of the eigenvectors ("partial curvature",
ZeRO-1 style): a step Reduce_scatters the gradient to the blocks, runs the FOSI rule on the
block (its projections are Allreduces of 2r and r floats) and reassembles θ with one
Allgatherv. Curvature is Lanczos on the HVP of a fixed curvature batch (FOSI's static batch),
its vectors sharded over the ranks that compute it, its HVP data-parallel over them.

- ``fosi``: one process; the curvature is computed inline at step W and every T steps.
- ``dho2`` mode ``sync`` (the official code): every rank trains, and every rank joins the
  sharded Lanczos at each refresh (training stops meanwhile).
- ``dho2`` mode ``overlap``: the world is split into an update group U and a curvature group
  C. At a refresh U's first rank hands C a snapshot of θ; C runs the sharded Lanczos while U
  keeps stepping with the old eigenpairs; the new ones are picked up with a non-blocking probe
  (``pickup = "probe"``) or exactly ``pickup_delay`` steps after the snapshot (``"fixed"``,
  deterministic, so a resumed run repeats an uninterrupted one bit for bit). The staleness of
  every installed curvature, in steps, is logged.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mpihybrid.admm.rule import ADMMConfig, ADMMRule
from mpihybrid.comm import Comm, Topology
from mpihybrid.config import Config, ConfigError, require
from mpihybrid.data import load_dataset
from mpihybrid.dp import ShardedBatches, ShardedTestSet
from mpihybrid.harness import Diverged, Run
from mpihybrid.models import build_model, flatten_parameters, l2_loss
from mpihybrid.seeding import derive_seed, numpy_rng
from mpihybrid.solvers.fosi import Base, FOSICore, refresh_due
from mpihybrid.solvers.hvp import FlatLoss, HVPMethod, hvp_function
from mpihybrid.solvers.lanczos import balanced_counts, lanczos

TAG_TASK, TAG_RESULT = 11, 12
TASK_CURVATURE, TASK_CHECKPOINT, TASK_STOP = 0, 1, 2


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

    def check(self) -> None:
        require(self.k >= 1, "fosi.k", f"must be >= 1, got {self.k}")
        require(self.l >= 0, "fosi.l", f"must be >= 0, got {self.l}")
        require(
            self.lanczos_steps == 0 or self.lanczos_steps >= self.k + self.l,
            "fosi.lanczos_steps",
            f"{self.lanczos_steps} Lanczos steps cannot give k + ℓ = {self.k + self.l} eigenpairs",
        )
        require(self.refresh_every >= 1, "fosi.refresh_every", f"T must be >= 1, got {self.refresh_every}")
        require(self.warmup >= 0, "fosi.warmup", f"must be >= 0, got {self.warmup}")
        require(self.alpha > 0, "fosi.alpha", f"must be > 0, got {self.alpha}")
        require(0 <= self.decay < 1, "fosi.decay", f"must be in [0, 1), got {self.decay}")
        require(self.clip_max >= 1, "fosi.clip_max", f"must be >= 1, got {self.clip_max}")
        require(self.curvature_batch >= 0, "fosi.curvature_batch", "must be >= 0")

    @property
    def steps(self) -> int:
        return self.lanczos_steps or 4 * (self.k + self.l)

    @property
    def first(self) -> int:
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


def validate(config: Config, world_size: int, algorithm: str) -> None:
    if algorithm == "fosi":
        require(world_size == 1, "fosi", f"fosi runs on one process; use 'dho2' for {world_size} ranks")
        update = 1
    elif config.dho2.mode == "overlap":
        require(world_size >= 2, "dho2.mode", "overlap needs at least 2 ranks (an update and a curvature group)")
        require(
            config.dho2.curvature_ranks < world_size,
            "dho2.curvature_ranks",
            f"{config.dho2.curvature_ranks} curvature ranks leave no update rank in a world of {world_size}",
        )
        update = world_size - config.dho2.curvature_ranks
    else:
        update = world_size
    require(
        config.train.batch_size % update == 0,
        "train.batch_size",
        f"{config.train.batch_size} does not split evenly over {update} update ranks",
    )
    curvature = world_size - update if update < world_size else world_size
    batch = config.fosi.curvature_batch or config.train.batch_size
    require(batch % curvature == 0, "fosi.curvature_batch", f"{batch} does not split evenly over {curvature} ranks")


class Trainer:
    """The model, data and curvature machinery one rank needs (update or curvature role)."""

    def __init__(self, run: Run, update: Comm | None, curvature: Comm | None):
        cfg = run.config
        self.run, self.cfg, self.update, self.curvature = run, cfg, update, curvature
        self.data = load_dataset(cfg.data, cfg.seed)
        self.x_train, self.y_train = torch.from_numpy(self.data.x_train), torch.from_numpy(self.data.y_train)
        self.model = build_model(cfg.model, self.data.input_shape, self.data.num_classes, cfg.seed)
        self.params = list(self.model.parameters())
        self.theta, self.grad = flatten_parameters(self.params)
        self.n = self.theta.numel()
        if cfg.fosi.k + cfg.fosi.l > self.n:
            raise ConfigError(
                "fosi.k", f"k + ℓ = {cfg.fosi.k + cfg.fosi.l} eigenpairs exceed the model's {self.n} parameters"
            )
        batch = cfg.fosi.curvature_batch or cfg.train.batch_size
        self.curvature_indices = np.sort(
            numpy_rng(cfg.seed, "curvature-batch").choice(len(self.y_train), batch, replace=False)
        )
        self.basis_bytes = 0
        if update is not None:
            self.batches = ShardedBatches(self.data.y_train, update.rank, update.size, cfg.train.batch_size, cfg.seed)
            self.counts = balanced_counts(self.n, update.size)
            lo = sum(self.counts[: update.rank])
            self.block = slice(lo, lo + self.counts[update.rank])
            self.theta_block = self.theta[self.block].clone()
            self.grad_block = torch.zeros_like(self.theta_block)
            f = cfg.fosi
            self.core = FOSICore(
                self.theta_block,
                base=f.base,
                lr=cfg.train.lr,
                momentum=cfg.train.momentum,
                alpha=f.alpha,
                decay=f.decay,
                clip_max=f.clip_max,
                reduce=self._reduce,
            )
            a = cfg.admm
            self.admm = ADMMRule(self.theta_block, a.sigma, a.round_steps or f.refresh_every, a.enabled)
            self.test = ShardedTestSet(self.data, update)

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        with self.update.stats.label("projections"):
            return self.update.Allreduce(t)

    # -- curvature (collective over the curvature communicator) --------------------------
    def hvp(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The HVP of this rank's part of the fixed curvature batch (built per refresh: buffers move)."""
        comm = self.curvature
        part = np.array_split(self.curvature_indices, comm.size)[comm.rank]
        loss = FlatLoss(self.model, self.x_train[part], self.y_train[part], self.cfg.train.weight_decay)
        return hvp_function(loss, self.cfg.fosi.hvp)

    def warm_up(self) -> None:
        """One throw-away HVP: torch.func's first call costs about a second, which would
        otherwise delay the first curvature by that much."""
        self.hvp()(self.theta.detach().clone(), torch.zeros_like(self.theta))

    def compute_curvature(self, theta: torch.Tensor, refresh: int) -> tuple[np.ndarray, np.ndarray]:
        """Sharded Lanczos on the HVP at θ; returns (values, this rank's block of the vectors)."""
        comm, f = self.curvature, self.cfg.fosi
        hvp = self.hvp()
        counts = balanced_counts(self.n, comm.size)
        mine = np.empty(counts[comm.rank])
        theta = theta.detach().clone()

        def matvec(x: np.ndarray) -> np.ndarray:
            hv = hvp(theta, torch.from_numpy(x).to(torch.float32)).to(torch.float64).numpy() / comm.size
            if not np.isfinite(hv).all():
                raise FloatingPointError("non-finite Hessian-vector product; the curvature was not refreshed")
            comm.Reduce_scatter(hv, mine, counts)
            return mine

        with comm.stats.label("lanczos"):
            ritz = lanczos(
                matvec, self.n, f.steps, f.k, f.l, seed=derive_seed(self.cfg.seed, "lanczos", refresh), comm=comm
            )
        self.basis_bytes = (f.steps * counts[comm.rank] + f.steps**2) * 8
        if not np.isfinite(ritz.values).all():
            raise FloatingPointError(f"non-finite eigenvalues {ritz.values}")
        values, vectors = ritz.values, ritz.vectors
        missing = f.k + f.l - len(values)
        if missing:  # documented fallback: zero vectors, which take no part in the update
            warnings.warn(
                f"Lanczos broke down after {ritz.iterations} steps with {len(values)} of {f.k + f.l} "
                f"eigenpairs; the rest are zero vectors",
                RuntimeWarning,
                stacklevel=2,
            )
            values = np.concatenate([np.full(missing, values[0]), values])
            vectors = np.vstack([np.zeros((missing, vectors.shape[1])), vectors])
        return values, vectors

    # -- the update rank's step ----------------------------------------------------------
    def train_step(self, step: int) -> float:
        """Collective over U: one data-parallel FOSI step; returns this rank's loss."""
        u = self.update
        idx = torch.from_numpy(self.batches.indices(step - 1))
        self.grad.zero_()
        loss = l2_loss(self.model, self.model(self.x_train[idx]), self.y_train[idx], self.cfg.train.weight_decay)
        loss.backward()
        with u.stats.label("gradients"):
            u.Reduce_scatter(self.grad, self.grad_block, self.counts)
        self.grad_block.div_(u.size)
        self.core.step(self.admm.gradient(self.grad_block))
        self.admm.after_step(step, self.theta_block)
        with u.stats.label("parameters"):
            u.Allgatherv(self.theta_block, self.theta, self.counts)
        return float(loss.detach())

    def evaluate(self) -> dict[str, float]:
        return self.test.evaluate(self.model)

    def install(self, values: np.ndarray, vectors_block: np.ndarray) -> None:
        self.core.set_curvature(values, vectors_block, self.cfg.fosi.k)

    def state(self) -> dict:
        return {
            **{f"fosi/{k}": v for k, v in self.core.state().items()},
            **{f"admm/{k}": v for k, v in self.admm.state().items()},
            "theta_block": self.theta_block.clone(),
        }

    def load_state(self, local: dict, shared: dict) -> None:
        self.theta.copy_(torch.as_tensor(shared["theta"]))
        self.theta_block.copy_(torch.as_tensor(local["theta_block"]))
        self.core.load_state({k[5:]: v for k, v in local.items() if k.startswith("fosi/")}, self.cfg.fosi.k)
        self.admm.load_state({k[5:]: v for k, v in local.items() if k.startswith("admm/")})

    def memory(self) -> dict[str, int]:
        if self.update is None:
            return {"curvature_bytes": self.basis_bytes, "optimizer_bytes": 0}
        core = self.core
        curv = (
            sum(t.numel() * t.element_size() for t in (core.V, core.values, core.eta, core.gram))
            if core.V is not None
            else 0
        )
        return {
            "curvature_bytes": curv + self.basis_bytes,
            "optimizer_bytes": core.state_bytes() - curv + self.admm.state_bytes(),
        }


def run_fosi(run: Run) -> None:
    _sync(run)


def run_dho2(run: Run) -> None:
    if run.config.dho2.mode == "sync":
        _sync(run)
    else:
        _overlap(run)


def _log_step(run: Run, tr: Trainer, step: int, loss: float, step_seconds: float, **extra: float) -> None:
    t = run.config.train
    run.check_finite(loss, step)
    row = {"wall_time": run.elapsed(), "train_loss": loss, "step_seconds": step_seconds, **extra}
    if step % t.eval_every == 0 or step == t.steps:
        row.update(tr.evaluate())
        run.progress(step, t.steps, loss=loss, acc=row["test_accuracy"])
    run.results.log(step, **row)


def _sync(run: Run) -> None:
    """FOSI (1 rank) and DHO2 sync: every rank updates and joins every refresh."""
    world, cfg = run.world, run.config
    tr = Trainer(run, update=world, curvature=world)
    if run.resumed is not None:
        tr.load_state(run.resumed.state.local, run.resumed.state.shared)
    run.set_threads()
    error = ""
    try:
        for step in range(run.start_step + 1, cfg.train.steps + 1):
            run.step_hook(step)
            t0 = time.perf_counter()
            extra = {}
            if refresh_due(step, cfg.fosi.first, cfg.fosi.refresh_every):
                tr.install(*tr.compute_curvature(tr.theta, step))
                extra["curvature_staleness"] = 0.0
            loss = world.allreduce_scalar(tr.train_step(step)) / world.size
            _log_step(run, tr, step, loss, time.perf_counter() - t0, **extra)
            if run.checkpoint_due(step, cfg.train.steps):
                run.save(step, {"theta": tr.theta}, tr.state())
    except Diverged as exc:
        error = str(exc)
    run.finish(tr.params, memory=tr.memory(), error=error)
    if error:
        raise Diverged(error)


class Handoff:
    """U's side of the conversation with C: snapshots out, eigenpairs in (U's first rank talks
    to C's first rank; U shares arrivals through its per-step loss reduction)."""

    def __init__(self, tr: Trainer, world: Comm, c_root: int):
        self.tr, self.world, self.c_root = tr, world, c_root
        self.in_flight: int | None = None  # snapshot step of the task C is computing
        self.pending: tuple[int, np.ndarray, np.ndarray] | None = None  # (snapshot step, values, block)
        self.is_root = tr.update.rank == 0

    def send_task(self, kind: int, step: int, theta: torch.Tensor | None = None) -> None:
        header = np.array([kind, step], dtype=np.int64)
        with self.world.stats.label("handoff"):
            self.world.Send(header, self.c_root, TAG_TASK)
            if theta is not None:
                self.world.Send(theta.detach().clone(), self.c_root, TAG_TASK)

    def arrived(self) -> bool:
        """U root: has C's result for the in-flight task arrived (non-blocking)?"""
        return self.in_flight is not None and self.world.mpi.Iprobe(self.c_root, TAG_RESULT)

    def receive(self) -> None:
        """Collective over U: take C's result (blocking at U's root) and scatter the blocks."""
        u, f = self.tr.update, self.tr.cfg.fosi
        r = f.k + f.l
        values = np.empty(r)
        full = np.empty((self.tr.n, r)) if self.is_root else None
        if self.is_root:
            with self.world.stats.label("handoff"):
                self.world.Recv(values, self.c_root, TAG_RESULT)
                self.world.Recv(full, self.c_root, TAG_RESULT)
        snapshot = np.array([self.in_flight if self.in_flight is not None else -1], dtype=np.int64)
        u.Bcast(snapshot)
        u.Bcast(values)
        mine = np.empty((self.tr.counts[u.rank], r))  # vectors travel as (n, r): blocks are row ranges
        with u.stats.label("handoff"):
            u.Scatterv(full, mine, [c * r for c in self.tr.counts])
        block = np.ascontiguousarray(mine.T)
        self.pending = (int(snapshot[0]), values, block)
        self.in_flight = None


def _curvature_loop(run: Run, tr: Trainer, world: Comm, u_root: int) -> str:
    """C ranks: serve snapshots until told to stop; join checkpoints. Returns the final error text."""
    c = tr.curvature
    header = np.empty(2, dtype=np.int64)
    tr.warm_up()
    while True:
        if c.rank == 0:
            while not world.mpi.Iprobe(u_root, TAG_TASK):
                time.sleep(0.0005)  # idle politely: a spinning receive would steal the update ranks' cores
            world.Recv(header, u_root, TAG_TASK)
        c.Bcast(header)
        kind, step = int(header[0]), int(header[1])
        if kind == TASK_CHECKPOINT:
            run.save(step, {}, {})
            continue
        if c.rank == 0:
            world.Recv(tr.theta, u_root, TAG_TASK)
        c.Bcast(tr.theta)
        if kind == TASK_STOP:
            return "diverged" if step < 0 else ""
        values, block = tr.compute_curvature(tr.theta, step)
        counts = [n * len(values) for n in balanced_counts(tr.n, c.size)]
        full = np.empty(sum(counts)) if c.rank == 0 else None
        c.Gatherv(np.ascontiguousarray(block.T).reshape(-1), full, counts)
        if c.rank == 0:
            world.Send(values, u_root, TAG_RESULT)
            world.Send(full, u_root, TAG_RESULT)


def _overlap(run: Run) -> None:
    world, cfg = run.world, run.config
    topo = Topology(world, {"update": world.size - cfg.dho2.curvature_ranks, "curvature": cfg.dho2.curvature_ranks})
    is_update = topo.role == "update"
    tr = Trainer(run, update=topo.comm if is_update else None, curvature=None if is_update else topo.comm)
    u_root, c_root = topo.ranks("update")[0], topo.ranks("curvature")[0]
    run.set_threads()
    if not is_update:
        error = _curvature_loop(run, tr, world, u_root)
        run.finish(tr.params, memory=tr.memory(), error=error)
        if error:
            raise Diverged(error)
        return
    if run.resumed is not None:
        tr.load_state(run.resumed.state.local, run.resumed.state.shared)
    hand = Handoff(tr, world, c_root)
    if run.resumed is not None and "pending/values" in run.resumed.state.local:
        local = run.resumed.state.local
        hand.pending = (
            int(local["pending/step"]),
            np.asarray(local["pending/values"]),
            np.asarray(local["pending/block"]),
        )
    d = cfg.dho2
    error, stop_step = "", cfg.train.steps
    flags = np.zeros(2)
    try:
        for step in range(run.start_step + 1, cfg.train.steps + 1):
            run.step_hook(step)
            t0 = time.perf_counter()
            extra = {"curvature_busy": float(hand.in_flight is not None)}
            due = hand.pending is not None and (d.pickup == "probe" or step >= hand.pending[0] + d.pickup_delay)
            if due:
                snap, values, block = hand.pending
                tr.install(values, block)
                hand.pending = None
                extra["curvature_staleness"] = float(step - snap)
            if (
                refresh_due(step, cfg.fosi.first, cfg.fosi.refresh_every)
                and hand.in_flight is None
                and hand.pending is None
            ):
                if hand.is_root:
                    hand.send_task(TASK_CURVATURE, step, tr.theta)
                hand.in_flight = step
            flags[:] = [tr.train_step(step), float(hand.is_root and hand.arrived())]
            tr.update.Allreduce(flags)
            if flags[1] or (
                d.pickup == "fixed" and hand.in_flight is not None and step + 1 >= hand.in_flight + d.pickup_delay
            ):
                hand.receive()
            stop_step = step
            _log_step(run, tr, step, flags[0] / tr.update.size, time.perf_counter() - t0, **extra)
            if run.checkpoint_due(step, cfg.train.steps):
                if hand.in_flight is not None:
                    hand.receive()  # drain: a checkpoint holds no half-computed curvature
                if hand.is_root:
                    hand.send_task(TASK_CHECKPOINT, step)
                local = tr.state()
                if hand.pending is not None:
                    local.update(
                        {
                            "pending/step": np.int64(hand.pending[0]),
                            "pending/values": hand.pending[1],
                            "pending/block": hand.pending[2],
                        }
                    )
                run.save(step, {"theta": tr.theta}, local)
    except Diverged as exc:
        error = str(exc)
    if hand.in_flight is not None:
        hand.receive()
    if hand.is_root:
        hand.send_task(TASK_STOP, -1 if error else stop_step, tr.theta)
    run.finish(tr.params, memory=tr.memory(), error=error)
    if error:
        raise Diverged(error)
