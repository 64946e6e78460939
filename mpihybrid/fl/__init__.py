"""Federated algorithms on MPI: virtual clients on ranks, a server role on rank 0."""
