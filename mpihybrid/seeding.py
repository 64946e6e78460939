"""Every random stream derives from one config seed through numpy's SeedSequence.

A stream is named by a path of ints and strings, e.g. ``("data", "split")`` or
``("decomfl", round, step, perturbation)``; equal paths give equal streams on every rank, so
seeds never need to be sent, and distinct paths never collide the way ``s*(p+17)+p`` does.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

Key = int | str


def _entropy(seed: int, path: tuple[Key, ...]) -> list[int]:
    # Strings become stable 32-bit words (crc32 is the same on every platform and run).
    return [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in path]


def seed_sequence(seed: int, *path: Key) -> np.random.SeedSequence:
    return np.random.SeedSequence(_entropy(seed, path))


def derive_seed(seed: int, *path: Key) -> int:
    """A 63-bit integer seed for the stream named by ``path``."""
    return int(seed_sequence(seed, *path).generate_state(1, np.uint64)[0] >> np.uint64(1))


def numpy_rng(seed: int, *path: Key) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, *path))


def torch_generator(seed: int, *path: Key) -> torch.Generator:
    """A CPU generator: CPU and CUDA streams differ for one seed, so draws are made on the CPU."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, *path))
