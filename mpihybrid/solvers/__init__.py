"""Numerical kernels with no MPI policy (a sharded kernel takes a communicator argument)."""
