"""The step loop every algorithm shares, written once.

An `Algorithm` is one algorithm as one rank runs it. `train` drives it: for every step it
injects the fault `MPIHYBRID_FAULT` asks for, calls `step` (the algorithm's own work, which
returns that step's metrics and raises `Diverged` on a NaN/Inf loss), stamps the wall time,
adds `evaluate` when an evaluation is due, logs the row, shows progress and writes a
checkpoint when one is due. A divergence ends the loop; `close` and the results file follow
either way, and the divergence is raised again for the CLI to turn into exit code 3.

A subclass implements `step`, `parameters` and what differs from the defaults: its config
sections, `validate` (cross-key checks, before any collective), `create` (when the class a
rank runs depends on its role), the total step count, when evaluations, progress lines and
checkpoints are due, its checkpoint state, memory counts and per-rank counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch

from mpihybrid.comm import Comm
from mpihybrid.config import Config
from mpihybrid.harness import Diverged, Run
from mpihybrid.io.checkpoint import State


class Algorithm:
    sections: ClassVar[dict[str, type]] = {}  # config sections beyond the common ones
    # Computes on ``run.device``. An algorithm that is not ported keeps False and runs on the CPU
    # whatever device.type says, with a note (`mpihybrid.device.device_for`; docs/gpu.md).
    on_device: ClassVar[bool] = False

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        """Cross-key checks on every rank before any collective; raise ConfigError."""

    @classmethod
    def create(cls, run: Run) -> Algorithm:
        """The object this rank runs (collective when roles are assigned)."""
        return cls(run)

    def __init__(self, run: Run):
        self.run = run
        self.config = run.config
        self.steps_done = run.start_step  # the last step taken: total_steps unless interrupted

    # -- what a subclass provides --------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.config.train.steps

    def step(self, step: int) -> dict[str, float]:
        """Collective: step ``step`` (1-based); returns its metrics."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Metrics of an evaluation step (collective or rank 0's alone, as the algorithm needs)."""
        return {}

    def evaluation_due(self, step: int) -> bool:
        return step % self.config.train.eval_every == 0 or step == self.total_steps

    def progress_due(self, step: int) -> bool:
        return self.evaluation_due(step)

    def checkpoint_due(self, step: int) -> bool:
        return self.run.checkpoint_due(step, self.total_steps)

    def step_comm(self) -> Comm:
        """The ranks that run the step loop together (they agree on an interruption after every step)."""
        return self.run.world

    def state(self) -> State:
        """Collective: what a checkpoint must hold to continue bit for bit."""
        return State()

    def load_state(self, state: State) -> None:
        """Continue from a checkpoint's state (called once, before the first step)."""

    def close(self, error: str) -> None:
        """Collective: after the last step, after a divergence (``error``) or after an
        interruption (then ``steps_done`` < ``total_steps``)."""

    def parameters(self) -> Iterable[torch.Tensor]:
        """The model whose hash the results file records."""
        raise NotImplementedError

    def memory(self) -> dict[str, int]:
        return {}

    def counters(self) -> dict[str, float]:
        return {}

    # -- the loop ------------------------------------------------------------------------
    def train(self) -> None:
        run = self.run
        if run.resumed is not None:
            self.load_state(run.resumed.state)
        error, interrupted = "", False
        try:
            for step in range(run.start_step + 1, self.total_steps + 1):
                run.inject_fault(step)
                row = self.step(step)
                row["wall_time"] = run.elapsed()
                if self.evaluation_due(step):
                    row.update(self.evaluate())
                run.results.log(step, **row)
                if self.progress_due(step):
                    run.progress(step, self.total_steps, row)
                self.steps_done = step
                due = self.checkpoint_due(step)
                if due:
                    run.save(step, self.state())
                if step < self.total_steps and run.stop_requested(self.step_comm()):
                    if not due and run.checkpoint_dir is not None:
                        run.save(step, self.state())
                    interrupted = True
                    break
        except Diverged as exc:
            error = str(exc)
        self.close(error)
        run.finish(self.parameters(), self.memory(), self.counters(), error, interrupted)
        if error:
            raise Diverged(error)
