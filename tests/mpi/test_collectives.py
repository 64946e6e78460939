"""Every buffer collective on COMM_WORLD, a Dup and a Split, with numpy and torch buffers
(mpi4py's idiom of one test body over several communicators)."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from mpihybrid.comm import Comm, CommStats


def communicators():
    world = Comm(MPI.COMM_WORLD)
    yield "world", world
    dup = world.Dup()
    yield "dup", dup
    dup.Free()
    split = world.Split(world.rank % 2, key=-world.rank)  # reversed rank order inside each half
    yield "split", split
    split.Free()


def buffers(n, dtype=np.float64):
    return [np.zeros(n, dtype), torch.zeros(n, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)]


@pytest.mark.mpi(ranks=[2, 4])
def test_blocking_collectives():
    for name, c in communicators():
        r, p = c.rank, c.size
        for buf in buffers(5):
            buf[:] = r + 1
            out = c.Allreduce(buf)
            assert out is buf and float(buf[0]) == p * (p + 1) / 2, name
            src = buf.copy() if isinstance(buf, np.ndarray) else buf.clone()
            src[:] = r
            dst = buf * 0
            c.Allreduce(src, dst, op=MPI.MAX)
            assert float(dst[4]) == p - 1 and float(src[0]) == r, name

            buf[:] = r + 1
            res = c.Reduce(buf, root=p - 1)
            assert (res is not None) == (r == p - 1)
            if r == p - 1:
                assert float(buf[2]) == p * (p + 1) / 2, name

            buf[:] = 7 if r == 0 else -1
            c.Bcast(buf, root=0)
            assert float(buf.sum()) == 35, name

        counts = [i + 1 for i in range(p)]
        for send, recv in (
            (np.full(r + 1, r, np.int32), np.empty(sum(counts), np.int32)),
            (torch.full((r + 1,), float(r)), torch.empty(sum(counts))),
        ):
            c.Allgatherv(send, recv, counts)
            expected = np.repeat(np.arange(p), counts)
            assert np.array_equal(np.asarray(recv), expected), name
            got = c.Gatherv(send, recv * 0 if r == 0 else None, counts, root=0)
            assert (got is None) == (r != 0)
            if r == 0:
                assert np.array_equal(np.asarray(got), expected), name

        assert c.allreduce_scalar(0.5) == 0.5 * p
        assert c.allreduce_scalar(float(r), op=MPI.MAX) == p - 1


@pytest.mark.mpi(ranks=2)
def test_accounting_counts_payload_per_kind_and_phase():
    stats = CommStats()
    c = Comm(MPI.COMM_WORLD, stats)
    sub = c.Split(0)
    assert sub.stats is stats
    with stats.label("round"):
        c.Allreduce(np.zeros(10, np.float32))
        sub.allreduce_scalar(1.0)
    c.Bcast(np.zeros(3), root=0)
    c.Allgatherv(np.zeros(2), np.zeros(2 * c.size), [2] * c.size)
    rnd = stats.total(phase="round")
    assert (rnd.calls, rnd.sent_bytes, rnd.received_bytes) == (2, 48, 48)
    bcast = stats.total(kind="bcast")
    assert (bcast.sent_bytes, bcast.received_bytes) == ((24, 0) if c.rank == 0 else (0, 24))
    ag = stats.by_kind()["allgatherv"]
    assert (ag.sent_bytes, ag.received_bytes) == (16, 16 * (c.size - 1))
    assert stats.total().seconds > 0 and stats.phase == "main"


@pytest.mark.mpi(ranks=4)
def test_topology_roles_and_subcommunicators():
    from mpihybrid.comm import Topology

    world = Comm(MPI.COMM_WORLD)
    for plan in (
        {"update": 3, "curvature": 1},
        {"update": 0.75, "curvature": 0.25},
        {"update": [0, 1, 2], "curvature": [3]},
    ):
        top = Topology(world, plan)
        expected = "update" if world.rank < 3 else "curvature"
        assert top.role == expected
        assert top.comm.size == (3 if expected == "update" else 1)
        assert top.ranks(expected)[top.comm.rank] == world.rank
        assert top.comm.allreduce_scalar(1.0) == top.comm.size
        assert top.leader("curvature") == 3
        top.free()
