"""Checkpoints on 2 ranks: each rank writes and reads back its own shard, and a set with one
shard missing is refused on every rank, naming that shard (so every rank stops with exit 2)."""

import numpy as np
import pytest
from mpi4py import MPI

from mpihybrid.comm import Comm
from mpihybrid.errors import CheckpointError
from mpihybrid.io.checkpoint import State, load_checkpoint, read_info, save_checkpoint


@pytest.mark.mpi(ranks=2)
def test_each_rank_writes_its_shard_and_a_partial_set_is_refused_everywhere(tmp_path_factory):
    world = Comm(MPI.COMM_WORLD)
    directory = world.mpi.bcast(str(tmp_path_factory.mktemp("ck")) if world.rank == 0 else None)
    mine = np.full(5, world.rank, dtype=np.float32)
    path = save_checkpoint(
        directory, world, step=7, algorithm="algo", config_hash="h", state=State({"w": np.ones(2)}, {"x": mine})
    )
    args = dict(rank=world.rank, world_size=2, algorithm="algo", config_hash="h")
    restored = load_checkpoint(path, **args)
    assert restored.step == 7 and np.array_equal(restored.state.local["x"], mine)
    assert np.array_equal(restored.state.shared["w"], np.ones(2))
    shards = read_info(path).shards
    assert [s["rank"] for s in shards] == [0, 1] and len({s["file"].parent for s in shards}) == 1
    world.mpi.Barrier()
    if world.rank == 1:
        shards[1]["file"].unlink()
    world.mpi.Barrier()
    with pytest.raises(CheckpointError, match=f"shard '{shards[1]['file']}' of rank 1 is missing"):
        load_checkpoint(path, **args)
