"""Bytes in decimal units with three significant digits."""

from mpihybrid.analysis.units import human_bytes


def test_human_bytes():
    cases = {0: "0 B", 20: "20 B", 999: "999 B", 999.6: "1 kB", 1380: "1.38 kB", 6500: "6.5 kB"}
    cases |= {723_000: "723 kB", 2_892_000: "2.89 MB", 4.05e9: "4.05 GB"}
    assert {n: human_bytes(n) for n in cases} == cases
