"""Recurrent sequence-mixing layers: `[B, T, D] -> [B, T, D]`, with a one-token `step()`."""
from .bdlru import BDLRU, BDLRUNonSelective
from .hlru import HLRU, HLRUNonSelective

__all__ = ["HLRU", "BDLRU", "HLRUNonSelective", "BDLRUNonSelective"]
