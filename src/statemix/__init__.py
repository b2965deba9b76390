"""statemix: higher-order (H-LRU) and block-diagonal (BD-LRU) linear recurrences."""

__version__ = "0.1.0"
