"""Language-model test material made on the spot: a tiny random OPT with a word-level tokenizer,
saved with save_pretrained, and small task files in GLUE / SuperGLUE formats. Nothing is
downloaded. Import it after ``pytest.importorskip("transformers")``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# Every word the task templates and the fixture sentences use; anything else is <unk>.
WORDS = (
    "It was good bad Yes No Maybe a the film movie plot actors great dull long fun story "
    "Question Is that correct or Does this mean true Suppose Can we infer word have same meaning "
    "in these two sentences previous sentence does pronoun refer to he she cat dog sat ran"
).split()
SPECIAL = ("<pad>", "</s>", "<unk>")
PUNCT = [".", ",", "?", ":", '"', "!"]
SENTENCE_WORDS = "a the film movie plot actors great dull long fun story".split()


def make_tokenizer(path: Path):
    """A word-level tokenizer (whitespace and punctuation split) that puts </s> first, as OPT's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIAL, *WORDS, *PUNCT])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(path)
    return fast


def make_opt(path: Path, *, hidden: int = 16, layers: int = 2, seed: int = 0, tokenizer: bool = True) -> Path:
    """A random OPT of the fixture vocabulary's size, saved (safetensors) with its tokenizer in ``path``."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=len(SPECIAL) + len(WORDS) + len(PUNCT),
        hidden_size=hidden,
        word_embed_proj_dim=hidden,
        num_hidden_layers=layers,
        ffn_dim=2 * hidden,
        num_attention_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    OPTForCausalLM(config).save_pretrained(path)
    if tokenizer:
        make_tokenizer(path)
    return path


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(SENTENCE_WORDS, size=rng.integers(2, 9))) + " ." for _ in range(n)]


def write_sst2(root: Path, n_train: int = 40, n_dev: int = 12, seed: int = 0) -> Path:
    """GLUE's SST-2 layout: train.tsv and dev.tsv with a ``sentence<TAB>label`` header."""
    root.mkdir(parents=True, exist_ok=True)
    for name, n, s in (("train.tsv", n_train, seed), ("dev.tsv", n_dev, seed + 1)):
        rows = [f"{t}\t{i % 2}" for i, t in enumerate(sentences(n, s))]
        (root / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


# One example per SuperGLUE task, in the published JSONL fields and label values.
SUPERGLUE = {
    "rte": ({"premise": "the cat sat .", "hypothesis": "a cat sat .", "idx": 0}, ["entailment", "not_entailment"]),
    "cb": ({"premise": "he ran .", "hypothesis": "she ran .", "idx": 0}, ["entailment", "contradiction", "neutral"]),
    "boolq": ({"question": "is the film long", "passage": "the film was long .", "idx": 0}, [False, True]),
    "wic": (
        {"word": "film", "sentence1": "a film .", "sentence2": "the film .", "idx": 0, "start1": 2, "end1": 6},
        [False, True],
    ),
    "wsc": (
        {
            "text": "the dog sat because he was dull .",
            "target": {"span1_index": 1, "span1_text": "dog", "span2_index": 4, "span2_text": "He"},
            "idx": 0,
        },
        [False, True],
    ),
}


def write_superglue(root: Path, task: str, n_train: int = 12, n_val: int = 6) -> Path:
    """SuperGLUE's layout for ``task``: train.jsonl and val.jsonl, one JSON object a line."""
    root.mkdir(parents=True, exist_ok=True)
    example, labels = SUPERGLUE[task]
    for name, n in (("train.jsonl", n_train), ("val.jsonl", n_val)):
        rows = [json.dumps({**example, "idx": i, "label": labels[i % len(labels)]}) for i in range(n)]
        (root / name).write_text("\n".join(rows) + "\n")
    return root
