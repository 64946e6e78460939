"""HDF5 checkpoints and results files."""
