"""Notebook 10_batch_norm_and_the_optimizer: scale invariance, weight decay and the effective learning rate."""
