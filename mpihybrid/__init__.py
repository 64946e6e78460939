"""mpihybrid: distributed training algorithms as MPI batch jobs, with HDF5 checkpoints and results."""

__version__ = "0.1.0"
