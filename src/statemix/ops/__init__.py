"""Functional H-LRU and BD-LRU recurrences with interchangeable backends."""
from .checks import BACKENDS, DTYPES
from .dispatch import bdlru, hlru
from .norm import NORMS, normalize

__all__ = ["hlru", "bdlru", "normalize", "NORMS", "BACKENDS", "DTYPES"]
