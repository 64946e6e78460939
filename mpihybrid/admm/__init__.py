"""FOSI and DHO2: the update side, the curvature side, their hand-off, the sync and overlap
modes, and DHO2's ADMM-like rule."""
