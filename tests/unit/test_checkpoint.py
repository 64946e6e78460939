import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from mpihybrid.comm import Comm
from mpihybrid.errors import CheckpointError
from mpihybrid.io import checkpoint
from mpihybrid.io.checkpoint import (
    State,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_info,
    save_checkpoint,
)
from mpihybrid.io.state import load_optimizer_tree, optimizer_tree

SELF = Comm(MPI.COMM_SELF)


def save(directory, step, shared=None, local=None, keep=2, config_hash="h1"):
    return save_checkpoint(
        directory,
        SELF,
        step=step,
        algorithm="algo",
        config_hash=config_hash,
        state=State(shared or {"w": np.arange(6.0).reshape(2, 3)}, local or {}),
        keep=keep,
    )


def load(path, **kw):
    args = dict(rank=0, world_size=1, algorithm="algo", config_hash="h1") | kw
    return load_checkpoint(path, **args)


def test_round_trip_of_every_leaf_kind(tmp_path):
    shared = {
        "a/f32": np.linspace(0, 1, 7, dtype=np.float32),
        "t": torch.arange(4, dtype=torch.int64),
        "name": "café",
        "lr": 0.5,
        "n": 3,
        "empty": np.zeros((0, 3)),
    }
    local = {"x": np.array([[1, 2]], dtype=np.uint16)}
    path = save(tmp_path, 5, shared, local)
    restored = load(path)
    step, s, loc = restored.step, restored.state.shared, restored.state.local
    assert restored.path == path and step == 5 and s["name"] == "café" and s["lr"] == 0.5 and s["n"] == 3
    assert s["a/f32"].dtype == np.float32 and np.array_equal(s["a/f32"], shared["a/f32"])
    assert isinstance(s["t"], torch.Tensor) and torch.equal(s["t"], shared["t"])
    assert s["empty"].shape == (0, 3)
    assert np.array_equal(loc["x"], local["x"]) and "rng/torch" in loc


def shard_of(path, rank=0):
    return read_info(path).shards[rank]["file"]


def test_keeps_newest_with_their_shards_and_ignores_torn_temp_files(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step)
    (tmp_path / "checkpoint-000000009.h5.tmp.123").write_bytes(b"torn")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000000002.h5", "checkpoint-000000003.h5"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-000000003.h5"
    kept = sorted(p.parent.name for p in (tmp_path / "shards").glob("*/rank-*.h5"))
    assert kept == sorted(shard_of(p).parent.name for p in list_checkpoints(tmp_path))


def test_local_state_lives_in_the_shard_and_shared_in_the_manifest(tmp_path):
    path = save(tmp_path, 4, {"w": np.ones(3)}, {"mine": np.arange(5)})
    with h5py.File(path) as f:
        assert "shared/w" in f and "local" not in f and f.attrs["format_version"] == 2
    with h5py.File(shard_of(path)) as f:
        assert "local/mine" in f and "local/rng/torch" in f and "shared" not in f


def test_a_write_that_dies_before_its_manifest_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    good = save(tmp_path, 1, local={"x": np.zeros(4)})
    real = checkpoint.atomic_h5

    def fail_on_the_manifest(path):
        if path.name.startswith("checkpoint-"):
            raise KeyboardInterrupt("killed after the shards")
        return real(path)

    monkeypatch.setattr(checkpoint, "atomic_h5", fail_on_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 2, local={"x": np.ones(4)})
    monkeypatch.undo()
    assert list_checkpoints(tmp_path) == [good] and len(list((tmp_path / "shards").iterdir())) == 2
    assert np.array_equal(load(good).state.local["x"], np.zeros(4))
    save(tmp_path, 3)  # the next commit removes the orphaned shards
    named = {shard_of(p).parent for p in list_checkpoints(tmp_path)}
    assert set((tmp_path / "shards").iterdir()) == named


def test_missing_shard_is_refused_naming_it(tmp_path):
    path = save(tmp_path, 1)
    shard_of(path).unlink()
    with pytest.raises(CheckpointError, match=f"incomplete: shard '{shard_of(path)}' of rank 0 is missing"):
        load(path)


def test_shard_of_another_run_is_refused_naming_it(tmp_path):
    mine = save(tmp_path / "a", 1, local={"x": np.zeros(2)})
    other = save(tmp_path / "b", 1, local={"x": np.zeros(2)})
    shard_of(other).replace(shard_of(mine))
    with pytest.raises(CheckpointError, match=f"shard '{shard_of(mine)}' belongs to another checkpoint"):
        load(mine)


def test_changed_shard_is_refused(tmp_path):
    path = save(tmp_path, 1, local={"x": np.zeros(8)})
    with h5py.File(shard_of(path), "r+") as f:
        del f["local/x"]
        forged = f["local"].create_dataset("x", data=np.ones(8))
        forged.attrs.update(kind="array", sha256=checkpoint._digest(np.ones(8)))
    with pytest.raises(CheckpointError, match="does not match the digest"):
        load(path)


def test_manifest_of_another_world_size_is_refused(tmp_path):
    path = save(tmp_path, 1)
    with h5py.File(path, "r+") as f:
        f.attrs["world_size"] = 2
    with pytest.raises(CheckpointError, match="shard table does not list ranks 0..1"):
        load(path, world_size=2)


def test_format_1_file_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "checkpoint-000000001.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(format_version=1, step=1, world_size=1, algorithm="algo", config_hash="h1")
    with pytest.raises(CheckpointError, match="format 1 .* older mpihybrid"):
        load(path)


def test_truncated_file_is_refused(tmp_path):
    path = save(tmp_path, 1, {"w": np.ones(100_000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load(path)


def test_flipped_byte_is_a_checksum_mismatch(tmp_path):
    path = save(tmp_path, 1, {"w": np.zeros(1000)})
    with h5py.File(path, "r+") as f:
        f["shared/w"][17] = 1.0
    with pytest.raises(CheckpointError, match="checksum mismatch in dataset '/shared/w'"):
        load(path)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"world_size": 2}, "written by 1 ranks; this job has 2"),
        ({"config_hash": "h2"}, "another config"),
        ({"algorithm": "other"}, "from algorithm 'algo'"),
    ],
)
def test_mismatches_are_refused(tmp_path, kw, words):
    path = save(tmp_path, 1)
    with pytest.raises(CheckpointError, match=words):
        load(path, **kw)


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "checkpoint-000000001.h5")


def test_optimizer_state_round_trip_is_bitwise(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().sum().backward()
        opt.step()
    path = save(tmp_path, 3, optimizer_tree(opt))
    tree = load(path).state.shared
    fresh = torch.optim.Adam(model.parameters(), lr=0.1)
    load_optimizer_tree(fresh, tree)
    for a, b in zip(opt.state.values(), fresh.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
