"""Argument checks and `key=value` parsing shared across the package; imports nothing from it."""


def is_positive_int(value) -> bool:
    """True for a Python int >= 1 (a bool is not an int here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive(**kwargs):
    """Raise ValueError naming the first argument that is not a positive int."""
    for key, val in kwargs.items():
        if not is_positive_int(val):
            raise ValueError(f"{key}: got {val!r}; must be a positive int")


def split_assignment(text: str):
    """'key=value' -> (key, value) as written, or None when there is no '=' or no key."""
    key, sep, value = text.partition("=")
    return (key, value) if sep and key else None
