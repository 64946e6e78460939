"""Data sets and partitioners."""

from mpihybrid.data.datasets import Dataset, load_dataset
from mpihybrid.data.partition import partition

__all__ = ["Dataset", "load_dataset", "partition"]
