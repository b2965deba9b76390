"""Token accuracies over scored positions, as MAD reports them (macro) and plainly (micro).

MAD scores with ``torchmetrics.MulticlassAccuracy(num_classes=V, ignore_index=-100)``, whose
default ``average='macro'`` is the mean over classes of per-class recall. Positions whose
target equals ``ignore_index`` are dropped first. A class enters the mean when it occurs as a
target *or* as a prediction on a scored position (torchmetrics drops a class only when
tp + fp + fn == 0), so a class that is predicted but never a target adds a 0 to the mean.
Both functions take numpy arrays or torch tensors of class ids of equal shape.
"""
from __future__ import annotations

import numpy as np

from statemix.tasks.common import IGNORE


def _scored(preds, targets, num_classes: int, ignore_index: int):
    p = _to_numpy(preds, "preds").reshape(-1)
    t = _to_numpy(targets, "targets").reshape(-1)
    if p.shape != t.shape:
        raise ValueError(
            f"preds and targets must have the same number of elements, got {p.size} and {t.size}"
        )
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    keep = t != ignore_index
    p, t = p[keep], t[keep]
    for name, x in (("targets", t), ("preds", p)):
        bad = (x < 0) | (x >= num_classes)
        if bad.any():
            raise ValueError(
                f"{name} on scored positions must lie in [0, {num_classes}), got {x[bad][0]}"
            )
    return p, t


def _to_numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def micro_accuracy(preds, targets, num_classes: int, ignore_index: int = IGNORE) -> float:
    """Fraction of scored positions predicted correctly (plain token accuracy); nan if none."""
    p, t = _scored(preds, targets, num_classes, ignore_index)
    return float((p == t).mean()) if t.size else float("nan")


def macro_accuracy(preds, targets, num_classes: int, ignore_index: int = IGNORE) -> float:
    """Mean per-class recall over scored positions, matching torchmetrics' macro average."""
    p, t = _scored(preds, targets, num_classes, ignore_index)
    if not t.size:
        return float("nan")
    support = np.bincount(t, minlength=num_classes)
    predicted = np.bincount(p, minlength=num_classes)
    hits = np.bincount(t[p == t], minlength=num_classes)
    present = (support + predicted) > 0
    recall = np.divide(hits, support, out=np.zeros(num_classes), where=support > 0)
    return float(recall[present].mean())
