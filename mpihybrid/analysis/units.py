"""Byte counts as people read them, in tables and on axes alike."""

from __future__ import annotations

UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    """Decimal units, three significant digits: 20 B, 6.5 kB, 723 kB, 2.89 MB."""
    unit = 0
    while abs(n) >= 999.5 and unit < len(UNITS) - 1:
        n /= 1000
        unit += 1
    return f"{n:.3g} {UNITS[unit]}"
