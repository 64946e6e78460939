"""A language-model run's bad input, found by the federated algorithms' `validate` (every rank,
before any collective, no weights read): the config key, and the file and line for task files.
One case goes through `mpihybrid run` on 2 ranks: exit code 2 and one line."""

import json
import shutil

import pytest

pytest.importorskip("transformers", reason="the llm extra is not installed (pip install -e '.[llm]')")
pytest.importorskip("peft", reason="the llm extra is not installed (pip install -e '.[llm]')")

from llm_fixtures import make_opt, write_sst2, write_superglue  # noqa: E402

from conftest import REPO, explain, launch  # noqa: E402
from mpihybrid import algorithms  # noqa: E402
from mpihybrid.config import apply_overrides, build_config, read_toml  # noqa: E402
from mpihybrid.errors import ConfigError  # noqa: E402

JOB = REPO / "jobs" / "decomfl" / "sst2-opt.toml"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return make_opt(root / "opt"), write_sst2(root / "sst2")


def _validate(model, data, *sets, algorithm="decomfl"):
    cls = algorithms.load(algorithm)
    raw = apply_overrides(
        read_toml(JOB), [f"model.path={json.dumps(str(model))}", f"data.path={json.dumps(str(data))}", *sets]
    )
    if "zo" not in cls.sections:
        del raw["zo"]
    cls.validate(build_config(raw, algorithms.sections(cls)), 2)


def _copy(src, dst, drop=(), edit=None):
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    if edit:
        name, text = edit
        (dst / name).write_text(text)
    return dst


def test_the_good_run_passes(good):
    _validate(*good)


def _bad_model(tmp_path, opt):
    tokenizer = json.loads((opt / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["goodish"] = tokenizer["model"]["vocab"].pop("good")
    pickled = _copy(opt, tmp_path / "pickle", drop=["model.safetensors"])
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    return {
        "missing": ("", "model.path", "set model.path"),
        "nowhere": (tmp_path / "nowhere", "model.path", "is not a directory"),
        "no config": (_copy(opt, tmp_path / "noconf", drop=["config.json"]), "model.path", "no config.json"),
        "bad config": (_copy(opt, tmp_path / "badconf", edit=("config.json", "{")), "model.path", "config.json does"),
        "not causal": (
            _copy(opt, tmp_path / "vit", edit=("config.json", '{"model_type": "vit"}')),
            "model.path",
            "not a causal LM",
        ),
        "no weights": (_copy(opt, tmp_path / "now", drop=["model.safetensors"]), "model.path", "no model weights"),
        "pickle": (pickled, "model.allow_pickle", "pickle weights"),
        "no tokenizer": (
            _copy(opt, tmp_path / "notok", drop=["tokenizer.json", "tokenizer_config.json"]),
            "model.path",
            "no tokenizer",
        ),
        "verbalizer": (
            _copy(opt, tmp_path / "vocab", edit=("tokenizer.json", json.dumps(tokenizer))),
            "data.name",
            "' good' is the unknown token",
        ),
    }


MODEL_CASES = [
    "missing",
    "nowhere",
    "no config",
    "bad config",
    "not causal",
    "no weights",
    "pickle",
    "no tokenizer",
    "verbalizer",
]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model_directories_name_the_key(tmp_path, good, case):
    path, key, says = _bad_model(tmp_path, good[0])[case]
    with pytest.raises(ConfigError, match=says) as err:
        _validate(path, good[1])
    assert err.value.key == key


@pytest.mark.parametrize(
    "sets, key, says",
    [
        (["data.name='digits'"], "data.name", "trains on a prompt task"),
        (["model.name='mlp'"], "model.name", "needs model.name = 'hf-causal-lm'"),
        (["data.max_length=1"], "data.max_length", "must be 0"),
        (["model.lora_rank=0"], "model.lora_rank", "must be >= 1"),
        (["model.dtype='float16'"], "model.dtype", "expected one of"),
    ],
)
def test_bad_keys_are_named(good, sets, key, says):
    with pytest.raises(ConfigError, match=says) as err:
        _validate(*good, *sets)
    assert err.value.key == key


def test_fedavg_and_fedzo_train_every_parameter(good):
    for algorithm in ("fedavg", "fedzo"):
        with pytest.raises(ConfigError, match="whole model") as err:
            _validate(*good, "model.trainable='lora'", algorithm=algorithm)
        assert err.value.key == "model.trainable"


@pytest.mark.parametrize(
    "task, name, text, says",
    [
        ("sst2", "train.tsv", "text\tlabel\na film\t1\n", "train.tsv' line 1: header"),
        ("sst2", "dev.tsv", "sentence\tlabel\na film\t1\na film\t2\n", "dev.tsv' line 3: label '2'"),
        ("rte", "val.jsonl", '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n', "val.jsonl' line 1: label"),
        ("wic", "train.jsonl", '{"word": "a", "sentence1": "b", "label": true}\n', "line 1: no field 'sentence2'"),
    ],
)
def test_bad_task_files_name_the_file_and_line(tmp_path, good, task, name, text, says):
    root = write_sst2(tmp_path / task) if task == "sst2" else write_superglue(tmp_path / task, task)
    (root / name).write_text(text)
    with pytest.raises(ConfigError, match=says) as err:
        _validate(good[0], root, f"data.name='{task}'")
    assert err.value.key == "data.path"


def test_a_bad_task_file_stops_every_rank_with_exit_2(tmp_path, good):
    data = write_sst2(tmp_path / "sst2")
    (data / "train.tsv").write_text("sentence\tlabel\na film\t7\n")
    args = ["run", "decomfl", "--config", str(JOB), "--set", f"model.path='{good[0]}'", "--set", f"data.path='{data}'"]
    proc = launch(2, *args, "--out", str(tmp_path / "r.h5"), timeout=120)
    assert proc.returncode == 2 and "train.tsv' line 2: label '7'" in proc.stderr, explain(proc)
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.h5").exists()
