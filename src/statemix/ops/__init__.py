"""Functional H-LRU and BD-LRU recurrences with interchangeable backends."""
from .dispatch import BACKENDS, DTYPES, bdlru, hlru
from .norm import NORMS, normalize

__all__ = ["hlru", "bdlru", "normalize", "NORMS", "BACKENDS", "DTYPES"]
