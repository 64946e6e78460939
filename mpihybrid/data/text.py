"""Prompt classification tasks read from their published files and tokenised for a causal LM.

Each task turns an example into a prompt and names one label word per class, with the
templates and words of DeComFL's code (after MeZO and PromptSource); a class is scored by the
logit of its word at the prompt's last token (`mpihybrid.models.hf.PromptClassifier`).

``data.path`` is the task's directory as published:
- ``sst2``: GLUE's SST-2, ``train.tsv`` and ``dev.tsv``, a ``sentence<TAB>label`` header, labels 0/1;
- ``rte``, ``cb``, ``boolq``, ``wic``, ``wsc``: SuperGLUE's, ``train.jsonl`` and ``val.jsonl``, one
  JSON object a line with the published fields and labels (entailment / not_entailment;
  entailment / contradiction / neutral; true / false). Class indices (0, 1, ...) and WSC's
  spans at the top level, as Hugging Face ``datasets`` exports them, are read too.
The dev/validation file is the test split, as in DeComFL's code (the published test files
have no labels).

Inputs are int64 arrays of shape (N, 2, L): token ids and attention mask, left padded to the
split's longest prompt, each prompt cut from the left to ``max_length - 1`` tokens: DeComFL
cuts prompt plus answer word to ``max_length``, which leaves the same prompt tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpihybrid.data.datasets import Dataset
from mpihybrid.errors import ConfigError

_BOOL = {False: 0, True: 1}


@dataclass(frozen=True)
class Task:
    prompt: Callable[[dict[str, Any]], str]
    words: tuple[str, ...]  # label word of each class
    labels: dict[Any, int]  # published label value -> class
    fields: tuple[str, ...]  # what the prompt reads from an example
    files: tuple[str, str]  # train, test
    max_length: int  # DeComFL's: prompt plus answer word, in tokens


_GLUE, _SUPERGLUE = ("train.tsv", "dev.tsv"), ("train.jsonl", "val.jsonl")

TASKS = {
    "sst2": Task(
        lambda e: f"{e['sentence'].strip()} It was", (" bad", " good"), {"0": 0, "1": 1}, ("sentence",), _GLUE, 32
    ),
    "rte": Task(
        lambda e: f'{e["premise"]}\nDoes this mean that "{e["hypothesis"]}" is true? Yes or No?\n',
        ("Yes", "No"),
        {"entailment": 0, "not_entailment": 1},
        ("premise", "hypothesis"),
        _SUPERGLUE,
        2048,
    ),
    "cb": Task(
        lambda e: f'Suppose {e["premise"]} Can we infer that "{e["hypothesis"]}"? Yes, No, or Maybe?\n',
        ("Yes", "No", "Maybe"),
        {"entailment": 0, "contradiction": 1, "neutral": 2},
        ("premise", "hypothesis"),
        _SUPERGLUE,
        2048,
    ),
    "boolq": Task(
        lambda e: f"{e['passage']}\nQuestion: {e['question']}\nIs that correct? Yes or No?\n",
        ("No", "Yes"),
        _BOOL,
        ("passage", "question"),
        _SUPERGLUE,
        2048,
    ),
    "wic": Task(
        lambda e: (
            f'Does the word "{e["word"]}" have the same meaning in these two sentences? Yes, No?\n'
            f"{e['sentence1']}\n{e['sentence2']}\n"
        ),
        ("No", "Yes"),
        _BOOL,
        ("word", "sentence1", "sentence2"),
        _SUPERGLUE,
        2048,
    ),
    "wsc": Task(
        lambda e: (
            f"{e['text']}\nIn the previous sentence, does the pronoun "
            f'"{e["span2_text"].lower()}" refer to {e["span1_text"]}? Yes or No?\n'
        ),
        ("No", "Yes"),
        _BOOL,
        ("text", "span1_text", "span2_text"),
        _SUPERGLUE,
        2048,
    ),
}


def _label(task: Task, value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(task.words):
        return value
    for published, cls in task.labels.items():
        if type(published) is type(value) and published == value:
            return cls
    allowed = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in task.labels)
    raise ConfigError("data.path", f"{where}: label {value!r} is not one of {allowed}")


def _read_tsv(path: Path, task: Task) -> tuple[list[str], list[int]]:
    prompts, labels = [], []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if header != ["sentence", "label"]:
            raise ConfigError("data.path", f"'{path}' line 1: header {header} is not ['sentence', 'label']")
        for n, line in enumerate(f, start=2):
            cols = line.rstrip("\r\n").split("\t")
            if cols == [""]:
                continue
            if len(cols) != 2:
                raise ConfigError("data.path", f"'{path}' line {n}: {len(cols)} columns, not 2 (sentence, label)")
            prompts.append(task.prompt({"sentence": cols[0]}))
            labels.append(_label(task, cols[1], f"'{path}' line {n}"))
    return prompts, labels


def _read_jsonl(path: Path, task: Task) -> tuple[list[str], list[int]]:
    prompts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"'{path}' line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError("data.path", f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError("data.path", f"{where}: not a JSON object")
            example = {**row.get("target", {}), **row}  # WSC keeps its spans under "target"
            for key in (*task.fields, "label"):
                if key not in example:
                    raise ConfigError("data.path", f"{where}: no field '{key}' (needs {', '.join(task.fields)}, label)")
            bad = [k for k in task.fields if not isinstance(example[k], str)]
            if bad:
                raise ConfigError("data.path", f"{where}: field '{bad[0]}' is not a string")
            prompts.append(task.prompt(example))
            labels.append(_label(task, example["label"], where))
    return prompts, labels


def read_split(name: str, path: Path) -> tuple[list[str], np.ndarray]:
    """The prompts and classes of one task file."""
    task = TASKS[name]
    if not path.is_file():
        raise ConfigError(
            "data.path", f"no '{path.name}' in '{path.parent}' (task '{name}' reads {' and '.join(task.files)})"
        )
    prompts, labels = (_read_tsv if path.suffix == ".tsv" else _read_jsonl)(path, task)
    if not prompts:
        raise ConfigError("data.path", f"'{path}' has no examples")
    return prompts, np.array(labels, dtype=np.int64)


def read_task(name: str, path: str) -> list[tuple[list[str], np.ndarray]]:
    """The prompts and classes of task ``name``'s train and test files in directory ``path``."""
    task = TASKS[name]
    root = Path(path)
    if not root.is_dir():
        raise ConfigError("data.path", f"'{path}' is not a directory (task '{name}' reads {' and '.join(task.files)})")
    return [read_split(name, root / f) for f in task.files]


def pad_token_id(tokenizer: Any) -> int:
    """The id left padding is filled with; it is masked out, so the end-of-text id serves where
    the tokenizer has no padding token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ConfigError("model.path", "the tokenizer has neither a padding nor an end-of-text token")
    return pad


def encode(prompts: list[str], tokenizer: Any, max_length: int) -> np.ndarray:
    """(N, 2, L) int64: the prompts' token ids (with the tokenizer's special tokens) and
    attention masks, each prompt cut from the left to max_length - 1 tokens, left padded."""
    ids = [s[-(max_length - 1) :] for s in tokenizer(prompts, add_special_tokens=True)["input_ids"]]
    width = max(len(s) for s in ids)
    out = np.zeros((len(ids), 2, width), dtype=np.int64)
    out[:, 0] = pad_token_id(tokenizer)
    for i, s in enumerate(ids):
        out[i, 0, width - len(s) :] = s
        out[i, 1, width - len(s) :] = 1
    return out


def load_task(name: str, path: str, tokenizer: Any, max_length: int = 0) -> Dataset:
    """Task ``name`` from its directory ``path``, tokenised; ``max_length`` 0 is DeComFL's for the
    task (SST-2 32, the others 2048), counting the prompt and its answer word."""
    task = TASKS[name]
    max_length = max_length or task.max_length
    if max_length < 2:
        raise ConfigError("data.max_length", f"must be >= 2 (a prompt token and the answer), got {max_length}")
    (train, y_train), (test, y_test) = read_task(name, path)
    return Dataset(
        encode(train, tokenizer, max_length),
        y_train,
        encode(test, tokenizer, max_length),
        y_test,
        num_classes=len(task.words),
    )
