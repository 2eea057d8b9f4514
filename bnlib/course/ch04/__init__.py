"""Notebook 04_gamma_and_beta: what the scale and shift buy, scale invariance, and where BN goes."""
