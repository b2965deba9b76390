"""Fused Triton scans for H-LRU and BD-LRU (M = 1 is the diagonal LRU), forward and backward.

Gate normalisation runs inside the kernels; state and arithmetic are fp32 (fp64 for
fp64 inputs). Math and design: README.md in this folder.
"""
from .bdlru import bdlru_triton
from .hlru import hlru_triton

__all__ = ["hlru_triton", "bdlru_triton"]
