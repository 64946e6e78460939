"""DHO2's ADMM-like rule and the FOSI/DHO2 trainer (``mpihybrid run fosi|dho2``)."""
