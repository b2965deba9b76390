"""Constants and argument checks shared by the task generators."""
from __future__ import annotations

import numpy as np

IGNORE = -100
SPLITS = ("train", "test")


def require(ok: bool, key: str, value, allowed: str) -> None:
    """Raise a ValueError naming the parameter, the value given and what is allowed."""
    if not ok:
        raise ValueError(f"task parameter {key!r} = {value!r} is invalid; allowed: {allowed}")


def write_tuples(buf: np.ndarray, rows: np.ndarray, start: np.ndarray, table: np.ndarray,
                 ids: np.ndarray) -> None:
    """Write the variable-length token tuples ``table[ids]`` (-1 padded) at ``buf[rows, start:]``."""
    for t in range(table.shape[1]):
        tok = table[ids, t]
        m = tok >= 0
        buf[rows[m], start[m] + t] = tok[m]
