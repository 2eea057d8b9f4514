"""Notebook 06_mnist_percentiles: the paper's MNIST experiment (Figure 1) reproduced."""
