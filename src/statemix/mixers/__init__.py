"""Sequence mixers, `[B, T, D] -> [B, T, D]`: H-LRU and BD-LRU (with a one-token `step()`) and the baselines."""
from .bdlru import BDLRU, BDLRUNonSelective
from .deltanet import GatedDeltaNet, GatedDeltaProduct
from .hlru import HLRU, HLRUNonSelective
from .lru_complex import LRUComplex
from .lstm import LSTM
from .mamba2 import Mamba2

__all__ = ["HLRU", "BDLRU", "HLRUNonSelective", "BDLRUNonSelective", "LRUComplex", "LSTM", "Mamba2",
           "GatedDeltaNet", "GatedDeltaProduct"]
