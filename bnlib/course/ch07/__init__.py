"""Notebook 07_perils_and_why_it_works: small and odd batches, and why batch norm helps."""
