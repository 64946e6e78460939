"""Read results files (README "Results file" schema) and tabulate them."""

from mpihybrid.analysis.table import analyze, read_results

__all__ = ["analyze", "read_results"]
