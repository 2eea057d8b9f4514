"""Notebook 02_internal_covariate_shift: hidden inputs drift during training; the bias that runs away."""
