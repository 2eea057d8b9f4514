"""Notebook 03_batch_norm_from_scratch: the forward and backward pass step by step, checked."""
