import pytest

from mpihybrid.config import COMMON_SECTIONS, apply_overrides, build_config, parse_override, read_toml
from mpihybrid.errors import ConfigError


def build(raw):
    return build_config(raw, COMMON_SECTIONS)


def test_defaults_and_int_for_float():
    c = build({"train": {"lr": 1}})
    assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
    assert c.data.name == "digits" and c.seed == 0


@pytest.mark.parametrize(
    "raw, key, words",
    [
        ({"train": {"lrr": 1}}, "train.lrr", "unknown key"),
        ({"train": {"lr": "fast"}}, "train.lr", "expected float"),
        ({"train": {"steps": 1.5}}, "train.steps", "expected int"),
        ({"train": {"steps": True}}, "train.steps", "expected int"),
        ({"data": {"name": "imagenet"}}, "data.name", "one of"),
        ({"model": {"hidden": [32, "x"]}}, "model.hidden", "expected int"),
        ({"optimiser": {}}, "optimiser", "unknown section"),
        ({"train": 3}, "train", "must be a table"),
        ({"train": {"steps": 0}}, "train.steps", ">= 1"),
        ({"data": {"name": "npz"}}, "data.path", "set data.path"),
        ({"seed": "x"}, "seed", "expected int"),
    ],
)
def test_bad_values_name_the_key(raw, key, words):
    with pytest.raises(ConfigError) as info:
        build(raw)
    assert info.value.key == key
    assert words in str(info.value) and f"'{key}'" in str(info.value)


def test_overrides_are_toml_values():
    raw = apply_overrides(
        {"train": {"lr": 0.1}}, ["train.lr=0.5", "model.hidden=[64, 32]", "data.name=mnist1d", "train.optimizer='sgd'"]
    )
    c = build(raw)
    assert c.train.lr == 0.5 and c.model.hidden == [64, 32] and c.data.name == "mnist1d"
    assert c.train.optimizer == "sgd"
    with pytest.raises(ConfigError):
        parse_override("train.lr")


def test_hash_ignores_checkpoint_cadence_and_device_only():
    base = build({})
    assert build({"checkpoint": {"every": 7}}).hash() == base.hash()
    assert build(apply_overrides({}, ["device.type=cuda", "device.share=true"])).hash() == base.hash()
    assert build({"train": {"lr": 0.5}}).hash() != base.hash()
    assert build({"seed": 1}).hash() != base.hash()


def test_device_section():
    c = build(apply_overrides({}, ["device.type=auto"]))
    assert (c.device.type, c.device.share) == ("auto", False) and build({}).device.type == "cpu"
    with pytest.raises(ConfigError, match="'device.type': expected one of 'cpu', 'cuda', 'auto', got 'gpu'"):
        build({"device": {"type": "gpu"}})
    with pytest.raises(ConfigError, match="device.share"):
        build({"device": {"share": "yes"}})


def test_read_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(bad)
