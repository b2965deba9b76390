"""Sequence mixers (H-LRU, BD-LRU and the baselines) by name and width, and MAD's backbones around them."""
from .backbones import AutoEncoder, LanguageModel, build_model
from .registry import Arch, registry

__all__ = ["registry", "Arch", "build_model", "LanguageModel", "AutoEncoder"]
