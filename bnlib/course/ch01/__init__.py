"""Notebook 01_input_normalization: why standardized inputs train faster (a linear model, exactly)."""
