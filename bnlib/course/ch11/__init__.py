"""Notebook 11_residual_networks_and_batch_renorm: batch norm in residual blocks, zero-init gamma, SkipInit,
and Batch Renormalization on small and class-sorted batches."""
