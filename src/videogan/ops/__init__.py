"""Kernels that are not networks (a faster transposed 3-D convolution)."""
