"""Notebook 05_ema_inference: running statistics, population statistics, and train versus eval mode."""
