"""Hugging Face causal language models from a local directory, as classifiers over label words.

`model.path` is a directory written by ``save_pretrained`` (the model's and the tokenizer's).
Loading never leaves it (``local_files_only``), never runs code from it (no
``trust_remote_code``), and reads safetensors weights only: a pickle weight file
(``pytorch_model.bin``) can run code when it is unpickled, so it is refused unless the user
opts in (``allow_pickle``). The language-model packages come with the ``llm`` extra and are
imported only here, when such a model is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpihybrid.errors import ConfigError
from mpihybrid.seeding import derive_seed

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# DeComFL's LoRA: rank 8, alpha 16, on the attention's query and value projections.
LORA_TARGETS = ("q_proj", "v_proj")
_SAFE = ("model.safetensors", "model.safetensors.index.json")
_PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_checkpoint(path: str, allow_pickle: bool = False) -> None:
    """What can be wrong with ``model.path`` without reading any weights: cheap enough for every
    rank to run before the first collective."""
    root = Path(path)
    if not path or not root.is_dir():
        raise ConfigError("model.path", f"'{path}' is not a directory (a model saved with save_pretrained)")
    if not (root / "config.json").is_file():
        raise ConfigError("model.path", f"'{path}' has no config.json: not a model saved with save_pretrained")
    if not any((root / n).is_file() for n in _SAFE):
        pickled = [n for n in _PICKLE if (root / n).is_file()]
        if not pickled:
            raise ConfigError("model.path", f"'{path}' has no model weights ({_SAFE[0]})")
        if not allow_pickle:
            raise ConfigError(
                "model.allow_pickle",
                f"'{path}' has only pickle weights ({pickled[0]}), which can run code when loaded: "
                "save them as safetensors, or set model.allow_pickle = true for a directory you trust",
            )
    if not any((root / n).is_file() for n in _TOKENIZER):
        raise ConfigError(
            "model.path", f"'{path}' has no tokenizer ({' or '.join(_TOKENIZER)}): save one there with save_pretrained"
        )


def check_architecture(path: str) -> None:
    """``model.path``'s config.json names a causal LM architecture transformers knows (no weights read)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError("model.path", f"'{path}': config.json does not load: {_first_line(exc)}") from None
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ConfigError("model.path", f"'{path}' holds a '{config.model_type}' model, which is not a causal LM")


def load_tokenizer(path: str) -> Any:
    """The tokenizer saved in ``path``."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ConfigError("model.path", f"'{path}': the tokenizer does not load: {_first_line(exc)}") from None
    return tokenizer


def label_token_ids(tokenizer: Any, words: Sequence[str], key: str = "data.name") -> list[int]:
    """The token of each label word. A class is scored by one token's logit, so each word must be
    exactly one known token for this tokenizer, and no two words the same token."""
    ids = []
    for word in words:
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if len(tokens) != 1:
            raise ConfigError(
                key, f"label word {word!r} is {len(tokens)} tokens {tokens} for the tokenizer in model.path, not one"
            )
        if tokens[0] == tokenizer.unk_token_id:
            raise ConfigError(key, f"label word {word!r} is the unknown token for the tokenizer in model.path")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ConfigError(key, f"label words {list(words)} do not have distinct tokens ({ids})")
    return ids


def load_causal_lm(
    path: str,
    *,
    dtype: str = "float32",
    trainable: str = "all",
    lora_rank: int = 8,
    lora_alpha: int = 16,
    allow_pickle: bool = False,
    seed: int = 0,
) -> nn.Module:
    """The causal LM in ``path``, in ``dtype``, in eval mode. ``trainable`` says which tensors have
    ``requires_grad`` (the ones a ZO step perturbs): ``all``, or ``lora`` (the base frozen,
    LoRA adapters on LORA_TARGETS, initialised from ``seed`` identically on every rank)."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    check_checkpoint(path, allow_pickle)
    # A batch job's log gets no progress bars, and a bad checkpoint one line (ours), not a load report.
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            path,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=None if allow_pickle else True,
            dtype=DTYPES[dtype],
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise ConfigError("model.path", f"'{path}' is not a causal LM that loads: {_first_line(exc)}") from None
    # transformers fills weights the files lack with random ones; a run must not train those.
    missing = sorted(info["missing_keys"] | info["mismatched_keys"])
    if missing:
        raise ConfigError("model.path", f"'{path}': {len(missing)} weights missing or of another shape ({missing[0]})")
    if trainable == "lora":
        from peft import LoraConfig, get_peft_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "model", "lora"))
            try:
                config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, target_modules=list(LORA_TARGETS))
                model = get_peft_model(model, config).to(DTYPES[dtype])
            except ValueError as exc:
                raise ConfigError("model.trainable", f"LoRA does not apply to '{path}': {_first_line(exc)}") from None
    return model.eval()


class PromptClassifier(nn.Module):
    """A causal LM as a classifier: the logits of the label tokens at the prompt's last position.

    ``forward(x)`` takes int64 ``x`` of shape (N, 2, L), token ids in ``x[:, 0]`` and the attention
    mask in ``x[:, 1]``, left padded (as `mpihybrid.data.text` writes them), and returns (N, C)
    float32 logits, so cross-entropy and argmax accuracy on ``model(x)`` work as for any
    classifier. The LM stays in eval mode whatever ``train()`` asks: a zeroth-order difference
    compares one function at two points, so dropout must stay off.
    """

    def __init__(self, lm: nn.Module, label_tokens: Sequence[int]):
        super().__init__()
        self.lm = lm.eval()
        self.label_tokens = list(label_tokens)

    def train(self, mode: bool = True) -> PromptClassifier:
        super().train(mode)
        self.lm.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        # Columns that are padding in every row (left padding puts them first) only cost time.
        start = int(mask.any(0).long().argmax())
        ids, mask = ids[:, start:], mask[:, start:]
        # Positions count real tokens only, so a prompt's logits do not depend on its padding.
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.lm(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1, self.label_tokens].float()


def prompt_classifier(path: str, words: Sequence[str], **load: Any) -> PromptClassifier:
    """The model in ``path`` scoring ``words`` (one class each); ``load`` as for `load_causal_lm`.
    The words are checked against the tokenizer before any weight is read."""
    tokens = label_token_ids(load_tokenizer(path), words)
    return PromptClassifier(load_causal_lm(path, **load), tokens)
