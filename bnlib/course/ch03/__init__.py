"""Notebook 03_batch_norm_from_scratch: the forward and backward pass written out, checked, and a layer."""
