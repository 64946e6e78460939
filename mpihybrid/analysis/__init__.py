"""Read results files (README "Results file" schema), tabulate, plot and report them."""

from mpihybrid.analysis.command import analyze
from mpihybrid.analysis.runs import read_results

__all__ = ["analyze", "read_results"]
