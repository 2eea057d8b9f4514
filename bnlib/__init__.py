"""bnlib: batch normalization from scratch, the library behind the Batch Norm course."""
