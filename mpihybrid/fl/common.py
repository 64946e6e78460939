"""What the federated algorithms share: config sections, virtual clients on ranks, client
sampling, derived client batches, server-side evaluation, the zeroth-order local steps, and
the round step.

Rounds are ``train.steps``; ``train.batch_size`` is a client's batch per local step;
``train.lr``, ``train.momentum`` and ``train.weight_decay`` set the update rule.

A rank builds one model (a small network, or a local Hugging Face causal LM scoring a prompt
task's label words: docs/decomfl-llm.md) on ``run.device``. Zeroth-order local steps perturb
and update that model's trainable tensors in place (`zo_local_steps`): the rank's virtual
clients take turns on it, so a rank holds one working model however many clients it hosts.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from mpihybrid.algorithm import Algorithm
from mpihybrid.blocks import blocks
from mpihybrid.config import TEXT_TASKS, Config, ConfigError, LanguageModelConfig, TextDataConfig, require
from mpihybrid.data import Dataset, load_dataset, partition
from mpihybrid.harness import Run
from mpihybrid.models import FlatModel, build_model, evaluation_sums
from mpihybrid.seeding import numpy_rng
from mpihybrid.solvers.zeroth_order import Directions, Key, SGDRule, estimate_

LANGUAGE_MODEL = "hf-causal-lm"


@dataclass
class FLConfig:
    clients: int = 8  # M virtual clients, spread over the ranks (M >> ranks is fine)
    sampled: int = 2  # m clients sampled per round
    local_steps: int = 1  # K local steps per sampled client per round
    lr_schedule: Literal["constant", "cosine"] = "constant"

    def check(self) -> None:
        require(self.clients >= 1, "fl.clients", f"must be >= 1, got {self.clients}")
        require(
            1 <= self.sampled <= self.clients,
            "fl.sampled",
            f"must be in [1, fl.clients = {self.clients}], got {self.sampled}",
        )
        require(self.local_steps >= 1, "fl.local_steps", f"must be >= 1, got {self.local_steps}")


@dataclass
class ZOConfig:
    perturbations: int = 5  # P directions per local step
    mu: float = 1e-3  # finite-difference step
    estimator: Literal["forward", "central"] = "forward"
    direction: Literal["gaussian", "sphere"] = "gaussian"

    def check(self) -> None:
        require(self.perturbations >= 1, "zo.perturbations", f"must be >= 1, got {self.perturbations}")
        require(self.mu > 0, "zo.mu", f"must be > 0, got {self.mu}")


def validate_federation(config: Config, world_size: int) -> None:
    require(
        config.fl.clients >= world_size,
        "fl.clients",
        f"{config.fl.clients} clients cannot occupy {world_size} ranks; use at least as many clients as ranks",
    )


def validate_language_model(config: Config) -> None:
    """What a language-model run can get wrong, found on every rank before any collective and
    without reading weights: the model and task go together, ``model.path`` is a save_pretrained
    directory of a known architecture with a tokenizer, each label word is one token, and the
    task files have the task's columns and labels."""
    model, data = config.model, config.data
    if (model.name == LANGUAGE_MODEL) != (data.name in TEXT_TASKS):
        if model.name == LANGUAGE_MODEL:
            raise ConfigError("data.name", f"a {LANGUAGE_MODEL} trains on a prompt task ({', '.join(TEXT_TASKS)})")
        raise ConfigError("model.name", f"prompt task '{data.name}' needs model.name = '{LANGUAGE_MODEL}'")
    if model.name != LANGUAGE_MODEL:
        return
    if importlib.util.find_spec("transformers") is None:
        raise ConfigError("model.name", f"a {LANGUAGE_MODEL} needs the llm extra: pip install -e '.[llm]'")
    from mpihybrid.data.text import TASKS, read_task
    from mpihybrid.models.hf import check_architecture, check_checkpoint, label_token_ids, load_tokenizer

    check_checkpoint(model.path, model.allow_pickle)
    check_architecture(model.path)
    label_token_ids(load_tokenizer(model.path), TASKS[data.name].words)
    read_task(data.name, data.path)


def load_model_and_data(config: Config) -> tuple[nn.Module, Dataset]:
    """The run's model (initialised alike on every rank) and its data set."""
    if config.model.name != LANGUAGE_MODEL:
        data = load_dataset(config.data, config.seed)
        return build_model(config.model, data.input_shape, data.num_classes, config.seed), data
    from mpihybrid.data.text import TASKS, load_task
    from mpihybrid.models.hf import load_tokenizer, prompt_classifier

    m, name = config.model, config.data.name
    data = load_task(name, config.data.path, load_tokenizer(m.path), config.data.max_length)
    model = prompt_classifier(
        m.path,
        TASKS[name].words,
        dtype=m.dtype,
        trainable=m.trainable,
        lora_rank=m.lora_rank,
        lora_alpha=m.lora_alpha,
        allow_pickle=m.allow_pickle,
        seed=config.seed,
    )
    return model, data


def sampled_clients(seed: int, round_: int, clients: int, sampled: int) -> np.ndarray:
    """The round's clients, sorted; the same on every rank without a message."""
    return np.sort(numpy_rng(seed, "fl-sample", round_).choice(clients, sampled, replace=False))


def learning_rate(config: Config, round_: int) -> float:
    lr = config.train.lr
    if config.fl.lr_schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * round_ / config.train.steps))
    return lr


class Federation:
    """The data, clients and model of one federated run, as seen from this rank."""

    def __init__(self, run: Run):
        cfg = run.config
        self.config, self.world, self.device = cfg, run.world, run.device
        model, self.data = load_model_and_data(cfg)
        self.client_indices = partition(
            self.data.y_train,
            cfg.fl.clients,
            cfg.seed,
            cfg.data.partition,
            alpha=cfg.data.alpha,
            shards_per_client=cfg.data.shards_per_client,
            owners=self.data.owner_train,
        )
        empty = [k for k, idx in enumerate(self.client_indices) if len(idx) == 0]
        if empty:
            raise ConfigError(
                "data.partition",
                f"clients {empty[:5]} received no samples; use fewer clients or a larger data.alpha",
            )
        self.sizes = np.array([len(i) for i in self.client_indices])
        self.mine = list(blocks(cfg.fl.clients, self.world.size).range(self.world.rank))
        self.x_train = torch.from_numpy(self.data.x_train).to(self.device)
        self.y_train = torch.from_numpy(self.data.y_train).to(self.device)
        self.model = model.to(self.device)
        # The tensors a step changes (all but a LoRA run's frozen base), in parameter order.
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.flat = FlatModel(self.model)
        # A language model's activations grow with the batch, so it evaluates in training batches,
        # and a pass over its training set (SST-2: 67k prompts) would cost more than the rounds
        # between evaluations, so its training loss is on a seeded sample as large as the test set.
        self.eval_batch, self.train_eval = 1024, slice(None)
        if cfg.model.name == LANGUAGE_MODEL:
            n_train, n_test = len(self.data.y_train), len(self.data.y_test)
            sample = numpy_rng(cfg.seed, "fl-train-eval").choice(n_train, min(n_train, n_test), replace=False)
            self.eval_batch, self.train_eval = cfg.train.batch_size, torch.from_numpy(np.sort(sample)).to(self.device)

    def sampled(self, round_: int) -> np.ndarray:
        return sampled_clients(self.config.seed, round_, self.config.fl.clients, self.config.fl.sampled)

    def batch(self, client: int, round_: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Client's batch for a local step, drawn from (seed, client, round, step): no stored state."""
        idx = self.client_indices[client]
        b = min(self.config.train.batch_size, len(idx))
        pick = numpy_rng(self.config.seed, "fl-batch", client, round_, step).choice(len(idx), b, replace=False)
        sel = torch.from_numpy(idx[np.sort(pick)]).to(self.device)
        return self.x_train[sel], self.y_train[sel]

    def loss(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """The model's cross-entropy on a batch, as it stands."""
        return float(nn.functional.cross_entropy(self.model(xb), yb))

    @torch.no_grad()
    def load(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copy ``tensors`` (one per trainable tensor, any shape of the same size) into the model."""
        for p, t in zip(self.trainable, tensors):
            p.copy_(t.view_as(p))

    def evaluate(self) -> dict[str, float]:
        """The model's test loss/accuracy and its training loss (on the whole training set, or a
        language model's sample of it), as it stands."""
        model = self.model.eval()
        x_test, y_test = (torch.from_numpy(a).to(self.device) for a in (self.data.x_test, self.data.y_test))
        tl, tc, tn = evaluation_sums(model, x_test, y_test, self.eval_batch)
        x_train, y_train = self.x_train[self.train_eval], self.y_train[self.train_eval]
        rl, _, rn = evaluation_sums(model, x_train, y_train, self.eval_batch)
        return {"train_loss": rl / rn, "test_loss": tl / tn, "test_accuracy": tc / tn}


@torch.no_grad()
def zo_local_steps(
    fed: Federation,
    rule: SGDRule,
    client: int,
    round_: int,
    bufs: list[torch.Tensor],
    path: Callable[[int], tuple[Key, ...]],
) -> torch.Tensor:
    """A client's K local ZO-SGD steps on ``fed``'s model, in place (momentum in ``bufs``, ``[]``
    without); returns its K×P scalars. Step j's P directions are those of the seed path
    ``path(j)``: shared by the round's clients in DeComFL, the client's own in FedZO."""
    z = fed.config.zo
    lr = learning_rate(fed.config, round_)
    scalars = torch.zeros(fed.config.fl.local_steps, z.perturbations, dtype=torch.float32)
    for j in range(fed.config.fl.local_steps):
        xb, yb = fed.batch(client, round_, j)
        dirs = Directions.over(fed.trainable, fed.config.seed, path(j), z.perturbations, z.direction)
        scalars[j], _ = estimate_(fed.trainable, lambda: fed.loss(xb, yb), dirs, z.mu, z.estimator)  # noqa: B023
        rule.update_(fed.trainable, bufs, dirs, scalars[j], lr)
    return scalars


class FederatedRounds(Algorithm):
    """DeComFL, FedAvg and FedZO: a step is a round. The bytes a round moves are measured (the
    collectives under the "round" label), and rank 0 evaluates the global model."""

    sections = {"fl": FLConfig, "model": LanguageModelConfig, "data": TextDataConfig}
    on_device = True  # models, data and the round's buffers live on run.device (docs/gpu.md)

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        validate_federation(config, world_size)
        validate_language_model(config)

    def __init__(self, run: Run):
        super().__init__(run)
        self.fed = Federation(run)

    def play_round(self, round_: int) -> dict[str, float]:
        """Collective: round ``round_`` (0-based); returns extra metrics."""
        raise NotImplementedError

    def global_model(self) -> list[torch.Tensor]:
        """The global model (rank 0's; on other ranks as far as the algorithm keeps it), one
        tensor per trainable tensor."""
        raise NotImplementedError

    def step(self, step: int) -> dict[str, float]:
        stats = self.run.world.stats
        before = stats.total(phase="round")
        extra = self.play_round(step - 1)
        moved = stats.total(phase="round") - before
        return {"uplink_bytes": moved.sent_bytes, "downlink_bytes": moved.received_bytes, **extra}

    def evaluate(self) -> dict[str, float]:
        if not self.run.is_root:
            return {}
        self.fed.load(self.global_model())
        return self.fed.evaluate()

    def parameters(self) -> Iterable[torch.Tensor]:
        return self.global_model()
