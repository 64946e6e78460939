"""Every buffer collective once, for comparing two transports (direct and host-staged) bit for bit."""

import torch
from mpi4py import MPI

from mpihybrid.comm import Comm, CommStats

SENTINEL = -7


def communicators():
    """COMM_WORLD, a Dup, and a Split into even and odd ranks in reversed order."""
    world = MPI.COMM_WORLD
    yield "world", world
    dup = world.Dup()
    yield "dup", dup
    dup.Free()
    split = world.Split(world.rank % 2, key=-world.rank)
    yield "split", split
    split.Free()


def run_all(c: Comm, dtype: torch.dtype, device: str = "cpu") -> list[torch.Tensor]:
    """Every buffer collective once, on inputs that differ per rank and per call; returns every
    buffer a collective wrote (receive buffers start as SENTINEL, one element longer where MPI
    allows it, so a staged copy-back that overwrote the part MPI left alone would show)."""
    r, p = c.rank, c.size
    gen = torch.Generator().manual_seed(1000 * r + p)

    def make(*shape):
        if dtype.is_floating_point:
            t = torch.randn(*shape, generator=gen, dtype=dtype)
        else:
            t = torch.randint(-1000, 1000, shape, generator=gen, dtype=dtype)
        return t.to(device)

    def sentinel(n):
        return torch.full((n,), SENTINEL, dtype=dtype, device=device)

    counts = [i + 1 for i in range(p)]
    out = []
    a = make(3, 4)
    c.Allreduce(a)
    out.append(a)
    s, m = make(6), sentinel(6)
    c.Allreduce(s, m, op=MPI.MAX)
    out += [s, m]
    a = make(5)
    c.Reduce(a, root=p - 1)
    out.append(a)
    s, m = make(4), sentinel(4)
    c.Reduce(s, m if r == 0 else None, root=0)
    out += [s, m]
    a = make(7)
    c.Bcast(a, root=p - 1)
    out.append(a)
    g = sentinel(sum(counts) + 1)
    c.Allgatherv(make(r + 1), g, counts)
    out.append(g)
    rs = sentinel(counts[r])
    c.Reduce_scatter(make(sum(counts)), rs, counts)
    out.append(rs)
    g = sentinel(sum(counts) + 1)
    c.Gatherv(make(r + 1), g if r == 0 else None, counts, root=0)
    out.append(g)
    sc = sentinel(counts[r] + 1)
    c.Scatterv(make(sum(counts)) if r == p - 1 else None, sc, counts, root=p - 1)
    out.append(sc)
    partner = r ^ 1
    if partner < p:  # pairs exchange: the lower rank sends first; a short message into a longer buffer
        got, mine = sentinel(5), make(3)
        if r < partner:
            c.Send(mine, partner, tag=3)
            c.Recv(got, partner, tag=3)
        else:
            c.Recv(got, partner, tag=3)
            c.Send(mine, partner, tag=3)
        out.append(got)
    return out


def counted(stats: CommStats) -> dict:
    return {key: (t.calls, t.sent_bytes, t.received_bytes) for key, t in stats.rows().items()}


def bits(tensors: list[torch.Tensor]) -> list[bytes]:
    return [t.cpu().numpy().tobytes() for t in tensors]
