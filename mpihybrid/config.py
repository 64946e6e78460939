"""TOML run configs: typed sections, validated completely on every rank before any collective.

A config is a table of sections (``[data]``, ``[model]``, ``[train]``, ...) plus a top-level
``seed``. Each section is a dataclass; its fields give the keys, types and defaults, and its
``check()`` the constraints. Unknown keys, wrong types and impossible values raise ConfigError
naming the dotted key. ``--set section.key=value`` overrides are parsed as TOML values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mpihybrid.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


DATA_SETS = ("digits", "mnist1d", "synthetic", "mnist-idx", "cifar10", "npz", "hdf5")
TEXT_TASKS = ("sst2", "rte", "cb", "boolq", "wic", "wsc")  # prompt tasks (mpihybrid.data.text)
NETWORKS = ("mlp", "cnn2d", "cnn1d")


@dataclass
class DataConfig:
    name: Literal[DATA_SETS] = "digits"
    path: str = ""  # directory or file for the file-based loaders
    test_fraction: float = 0.2  # held-out share for data sets without a fixed test split
    num_samples: int = 4000  # mnist1d and synthetic: samples generated
    standardize: bool = True  # zero mean, unit variance per feature, from training statistics
    partition: Literal["iid", "dirichlet", "shards", "owner"] = "iid"  # owner: Synthetic's users
    alpha: float = 0.5  # Dirichlet concentration (partition = "dirichlet")
    shards_per_client: int = 2  # label shards per client (partition = "shards")
    synthetic_alpha: float = 0.5  # pFedMe Synthetic(alpha, beta): model heterogeneity
    synthetic_beta: float = 0.5  # ... and input heterogeneity
    synthetic_dim: int = 60
    synthetic_classes: int = 10

    def check(self) -> None:
        require(0 < self.test_fraction < 1, "data.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        require(self.num_samples >= 10, "data.num_samples", f"must be >= 10, got {self.num_samples}")
        require(self.alpha > 0, "data.alpha", f"must be > 0, got {self.alpha}")
        require(self.shards_per_client >= 1, "data.shards_per_client", f"must be >= 1, got {self.shards_per_client}")
        require(self.synthetic_alpha >= 0, "data.synthetic_alpha", "must be >= 0")
        require(self.synthetic_beta >= 0, "data.synthetic_beta", "must be >= 0")
        require(self.synthetic_dim >= 1, "data.synthetic_dim", "must be >= 1")
        require(self.synthetic_classes >= 2, "data.synthetic_classes", "must be >= 2")
        if self.name in ("mnist-idx", "cifar10", "npz", "hdf5"):
            require(bool(self.path), "data.path", f"data set '{self.name}' reads files: set data.path")
            require(Path(self.path).exists(), "data.path", f"'{self.path}' does not exist")


@dataclass
class ModelConfig:
    name: Literal[NETWORKS] = "mlp"
    hidden: list[int] = field(default_factory=lambda: [32])  # MLP hidden widths; CNN head widths
    channels: list[int] = field(default_factory=lambda: [16, 32])  # CNN conv channels
    kernel_size: int = 3
    activation: Literal["relu", "tanh", "gelu"] = "relu"

    def check(self) -> None:
        require(all(h >= 1 for h in self.hidden), "model.hidden", f"widths must be >= 1, got {self.hidden}")
        require(all(c >= 1 for c in self.channels), "model.channels", f"channels must be >= 1, got {self.channels}")
        require(self.name == "mlp" or len(self.channels) >= 1, "model.channels", "a CNN needs at least one conv layer")
        require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "model.kernel_size", "must be odd and >= 1")


@dataclass
class TextDataConfig(DataConfig):
    """`DataConfig` plus the prompt tasks, for the algorithms that can train a language model."""

    name: Literal[DATA_SETS + TEXT_TASKS] = "digits"
    max_length: int = 0  # prompt tasks: prompt plus answer word, in tokens; 0 = DeComFL's for the task

    def check(self) -> None:
        super().check()
        require(
            self.max_length == 0 or self.max_length >= 2,
            "data.max_length",
            f"must be 0 (the task's own) or >= 2 (a prompt token and the answer), got {self.max_length}",
        )
        if self.name in TEXT_TASKS:
            require(bool(self.path), "data.path", f"task '{self.name}' reads its published files: set data.path")


@dataclass
class LanguageModelConfig(ModelConfig):
    """`ModelConfig` plus a local Hugging Face causal LM (`mpihybrid.models.hf`)."""

    name: Literal[(*NETWORKS, "hf-causal-lm")] = "mlp"
    path: str = ""  # hf-causal-lm: a directory written by save_pretrained (model and tokenizer)
    dtype: Literal["float32", "bfloat16"] = "float32"
    trainable: Literal["all", "lora"] = "all"  # the tensors a step changes: every one, or LoRA adapters
    lora_rank: int = 8
    lora_alpha: int = 16
    allow_pickle: bool = False  # accept pickle weight files (they can run code when loaded)

    def check(self) -> None:
        super().check()
        require(self.lora_rank >= 1, "model.lora_rank", f"must be >= 1, got {self.lora_rank}")
        require(self.lora_alpha >= 1, "model.lora_alpha", f"must be >= 1, got {self.lora_alpha}")
        if self.name == "hf-causal-lm":
            require(bool(self.path), "model.path", "an hf-causal-lm reads a save_pretrained directory: set model.path")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps (data-parallel) or rounds (federated)
    batch_size: int = 64  # global batch, split evenly over the data-parallel ranks
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD momentum
    weight_decay: float = 0.0  # L2, added to the loss so curvature methods see it
    eval_every: int = 100  # steps between test evaluations (and the final step)
    threads: int = 0  # torch threads per rank; 0 = the cores this rank owns

    def check(self) -> None:
        require(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        require(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        require(0 <= self.momentum < 1, "train.momentum", f"must be in [0, 1), got {self.momentum}")
        require(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        require(self.threads >= 0, "train.threads", f"must be >= 0, got {self.threads}")


@dataclass
class CheckpointConfig:
    every: int = 0  # steps between checkpoints; 0 = only at the end of the run
    keep: int = 2  # newest checkpoints kept in the directory

    def check(self) -> None:
        require(self.every >= 0, "checkpoint.every", f"must be >= 0, got {self.every}")
        require(self.keep >= 1, "checkpoint.keep", f"must be >= 1, got {self.keep}")


@dataclass
class DeviceConfig:
    """Where every rank computes (resolved at start-up by `mpihybrid.device.select_device`)."""

    type: Literal["cpu", "cuda", "auto"] = "cpu"  # auto: CUDA if every rank has a GPU, else CPU
    share: bool = False  # let ranks share a GPU (more ranks than GPUs on a node)


# Sections every algorithm understands; algorithms add their own (see mpihybrid.algorithms).
COMMON_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "checkpoint": CheckpointConfig,
    "device": DeviceConfig,
}
# Sections a resume may change: how often checkpoints are written, and where the ranks compute
# (checkpoints hold host copies; see docs/gpu.md for what a change of device means).
RESUME_FREE = ("checkpoint", "device")


@dataclass
class Config:
    """A validated run config: ``seed`` and one dataclass instance per section."""

    seed: int
    sections: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **{name: dataclasses.asdict(s) for name, s in self.sections.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def hash(self) -> str:
        """What a checkpoint must match to be resumed: everything but the `RESUME_FREE` sections."""
        d = self.to_dict()
        for name in RESUME_FREE:
            d.pop(name, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {typing.get_args(tp)[0].__name__}"
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a field type; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) is type(typing.get_args(tp)[0]):
            return value
    elif origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_coerce(v, item, key) for v in value]
    elif isinstance(tp, types.UnionType) or origin is typing.Union:
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif isinstance(value, tp):
        return value
    raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def build_section(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known keys in [{prefix}]: {', '.join(names)})")
    values = {k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in raw.items()}
    section = cls(**values)
    if hasattr(section, "check"):
        section.check()
    return section


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` with ``value`` read as TOML (bare words are strings)."""
    if "=" not in text:
        raise ConfigError(text, "an override must look like section.key=value")
    key, value = (part.strip() for part in text.split("=", 1))
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        key, value = parse_override(text)
        *path, leaf = key.split(".")
        table = raw
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(key, f"'{part}' is not a section")
        table[leaf] = value
    return raw


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", f"file '{path}' not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"'{path}' is not valid TOML: {exc}") from None


def build_config(raw: dict[str, Any], sections: dict[str, type]) -> Config:
    """Validate a raw config table against ``sections``; raise ConfigError on the first problem."""
    raw = dict(raw)
    seed = _coerce(raw.pop("seed", 0), int, "seed")
    for name, value in raw.items():
        if name not in sections:
            raise ConfigError(name, f"unknown section or key (known: seed, {', '.join(sections)})")
        if not isinstance(value, dict):
            raise ConfigError(name, f"must be a table [{name}], got {value!r}")
    built = {name: build_section(cls, raw.get(name, {}), name) for name, cls in sections.items()}
    return Config(seed=seed, sections=built)
