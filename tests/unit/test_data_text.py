"""Prompt tasks from GLUE / SuperGLUE files: templates, labels, tokenisation, bad files."""

import json

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the llm extra is not installed (pip install -e '.[llm]')")

from llm_fixtures import SUPERGLUE, make_tokenizer, write_sst2, write_superglue  # noqa: E402

from mpihybrid.config import DataConfig  # noqa: E402
from mpihybrid.data import partition  # noqa: E402
from mpihybrid.data.datasets import check_arrays  # noqa: E402
from mpihybrid.data.text import load_task, read_split  # noqa: E402
from mpihybrid.errors import ConfigError  # noqa: E402
from mpihybrid.models.hf import load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path)
    return load_tokenizer(str(path))


def test_sst2_is_left_padded_prompts_and_file_labels(tmp_path, tok):
    root = write_sst2(tmp_path / "SST-2", n_train=40, n_dev=12)
    data = load_task("sst2", str(root), tok)
    assert data.x_train.shape[:2] == (40, 2) and data.x_test.shape[:2] == (12, 2) and data.num_classes == 2
    assert data.x_train.dtype == np.int64 and data.y_train.dtype == np.int64
    lines = (root / "train.tsv").read_text().splitlines()[1:]
    assert data.y_train.tolist() == [int(line.split("\t")[1]) for line in lines]
    for (ids, mask), line in zip(data.x_train, lines):
        n = int(mask.sum())
        assert mask.tolist() == [0] * (len(mask) - n) + [1] * n  # left padding
        assert (ids[: len(mask) - n] == tok.pad_token_id).all()
        assert ids[len(mask) - n :].tolist() == tok(line.split("\t")[0] + " It was")["input_ids"]
    # What the federated code does with any data set works on these arrays.
    check_arrays({"x_train": data.x_train, "y_train": data.y_train}, data.num_classes, DataConfig())
    parts = partition(data.y_train, 4, 0, "dirichlet", alpha=1.0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(40))


def test_max_length_keeps_the_end_of_the_prompt(tmp_path, tok):
    root = write_sst2(tmp_path / "SST-2")
    full = load_task("sst2", str(root), tok, max_length=64)
    cut = load_task("sst2", str(root), tok, max_length=4)
    assert cut.x_train.shape[2] == 3  # prompt + answer word <= 4 tokens
    assert full.x_train.shape[2] > 3
    assert (cut.x_train[:, 0] == full.x_train[:, 0, -3:]).all()
    with pytest.raises(ConfigError, match=">= 2") as err:
        load_task("sst2", str(root), tok, max_length=1)
    assert err.value.key == "data.max_length"


def test_prompts_follow_decomfl_templates(tmp_path):
    want = {
        "rte": 'the cat sat .\nDoes this mean that "a cat sat ." is true? Yes or No?\n',
        "cb": 'Suppose he ran . Can we infer that "she ran ."? Yes, No, or Maybe?\n',
        "boolq": "the film was long .\nQuestion: is the film long\nIs that correct? Yes or No?\n",
        "wic": 'Does the word "film" have the same meaning in these two sentences? Yes, No?\na film .\nthe film .\n',
        "wsc": 'the dog sat because he was dull .\nIn the previous sentence, does the pronoun "he" refer to dog? '
        "Yes or No?\n",
    }
    for task, prompt in want.items():
        prompts, labels = read_split(task, write_superglue(tmp_path / task, task) / "train.jsonl")
        assert prompts[0] == prompt
        classes = len(SUPERGLUE[task][1])
        assert labels.tolist() == [i % classes for i in range(len(labels))]
    assert read_split("sst2", write_sst2(tmp_path / "sst2") / "dev.tsv")[0][0].endswith(" . It was")


def test_class_indices_and_top_level_spans_as_hf_datasets_exports_them(tmp_path, tok):
    root = tmp_path / "WSC"
    root.mkdir()
    row = {"text": "the dog sat .", "span1_text": "dog", "span2_text": "it", "idx": 0}
    for name in ("train.jsonl", "val.jsonl"):
        (root / name).write_text("\n".join(json.dumps({**row, "label": i % 2}) for i in range(4)) + "\n")
    assert load_task("wsc", str(root), tok).y_train.tolist() == [0, 1, 0, 1]


def _bad(tmp_path, tok, task, name, text, says):
    root = write_sst2(tmp_path / task) if task == "sst2" else write_superglue(tmp_path / task, task)
    (root / name).write_text(text)
    with pytest.raises(ConfigError, match=says) as err:
        load_task(task, str(root), tok)
    assert err.value.key == "data.path" and name in str(err.value)


@pytest.mark.parametrize(
    "task, name, text, says",
    [
        ("sst2", "train.tsv", "text\tlabel\na film\t1\n", "line 1: header"),
        ("sst2", "train.tsv", "sentence\tlabel\na film\t1\na film\n", "line 3: 1 columns"),
        ("sst2", "dev.tsv", "sentence\tlabel\na film\t1\na film\t2\n", "line 3: label '2' is not one of 0, 1"),
        ("sst2", "train.tsv", "sentence\tlabel\n", "has no examples"),
        ("cb", "val.jsonl", '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n', "line 1: label 'maybe'"),
        ("rte", "train.jsonl", '{"premise": "a", "hypothesis": "b", "label": true}\n', "line 1: label True"),
        ("boolq", "train.jsonl", '{"passage": "a", "question": "b", "label": 2}\n', "line 1: label 2 is not one"),
        ("wic", "train.jsonl", '{"word": "a", "sentence1": "b", "label": true}\n', "line 1: no field 'sentence2'"),
        ("wsc", "val.jsonl", '{"text": "a", "span1_text": "b", "span2_text": "c", "label": true}\n{oops\n', "line 2"),
        ("rte", "train.jsonl", '{"premise": 3, "hypothesis": "b", "label": "entailment"}\n', "'premise' is not a"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, tok, task, name, text, says):
    _bad(tmp_path, tok, task, name, text, says)


def test_missing_files_and_directories(tmp_path, tok):
    with pytest.raises(ConfigError, match="not a directory"):
        load_task("sst2", str(tmp_path / "nowhere"), tok)
    root = write_superglue(tmp_path / "RTE", "rte")
    (root / "val.jsonl").unlink()
    with pytest.raises(ConfigError, match="no 'val.jsonl'") as err:
        load_task("rte", str(root), tok)
    assert err.value.key == "data.path"
