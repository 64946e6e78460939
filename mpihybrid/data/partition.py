"""Partitioners: split sample indices over clients, deterministically from one seed.

Every sample is assigned to exactly one client; each client's indices are sorted.
"""

from __future__ import annotations

import numpy as np

from mpihybrid.errors import ConfigError
from mpihybrid.seeding import numpy_rng


def iid(labels: np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    order = numpy_rng(seed, "partition", "iid").permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet(labels: np.ndarray, num_clients: int, seed: int, alpha: float) -> list[np.ndarray]:
    """Per class, client shares ~ Dir(alpha): small alpha gives few classes per client."""
    rng = numpy_rng(seed, "partition", "dirichlet")
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def shards(labels: np.ndarray, num_clients: int, seed: int, shards_per_client: int) -> list[np.ndarray]:
    """Sort by label, cut into num_clients * shards_per_client shards, deal them out at random."""
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise ConfigError(
            "data.shards_per_client", f"{num_shards} shards need at least as many samples; there are {len(labels)}"
        )
    rng = numpy_rng(seed, "partition", "shards")
    by_label = np.argsort(labels, kind="stable")
    pieces = np.array_split(by_label, num_shards)
    deal = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in deal]


def by_owner(owners: np.ndarray, num_clients: int) -> list[np.ndarray]:
    """The data set's own users (Synthetic's): user u goes to client u mod num_clients."""
    return [np.flatnonzero(owners % num_clients == k) for k in range(num_clients)]


def partition(
    labels: np.ndarray,
    num_clients: int,
    seed: int,
    scheme: str,
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    owners: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Indices per client for ``scheme`` in iid | dirichlet | shards | owner."""
    if num_clients > len(labels):
        raise ConfigError("data.partition", f"{num_clients} clients but only {len(labels)} samples")
    if scheme == "owner":
        if owners is None:
            raise ConfigError("data.partition", "'owner' needs a data set with users (data.name = 'synthetic')")
        return by_owner(owners, num_clients)
    if scheme == "iid":
        return iid(labels, num_clients, seed)
    if scheme == "dirichlet":
        return dirichlet(labels, num_clients, seed, alpha)
    if scheme == "shards":
        return shards(labels, num_clients, seed, shards_per_client)
    raise ConfigError("data.partition", f"unknown scheme '{scheme}'")
