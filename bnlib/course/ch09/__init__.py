"""Notebook 09_batch_norm_across_devices: batch norm when a batch is split between processes."""
