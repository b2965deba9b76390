"""Token accuracies over scored positions, as MAD reports them (macro) and plainly (micro).

MAD scores with ``torchmetrics.MulticlassAccuracy(num_classes=V, ignore_index=-100)``, whose
default ``average='macro'`` is the mean over classes of per-class recall. Positions whose
target equals ``ignore_index`` are dropped first. A class enters the mean when it occurs as a
target *or* as a prediction on a scored position (torchmetrics drops a class only when
tp + fp + fn == 0), so a class that is predicted but never a target adds a 0 to the mean.
Inputs are numpy arrays or torch tensors of class ids of equal size. Tensors are counted where
they live: a training's predictions stay on the GPU, and only the two numbers come back.
"""
from __future__ import annotations

import numpy as np
import torch

from statemix.tasks.common import IGNORE


def _flat(x, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class ids, got dtype {str(t.dtype).replace('torch.', '')}")
    return t.reshape(-1).long()


def accuracies(preds, targets, num_classes: int, ignore_index: int = IGNORE):
    """`(macro, micro, bad)` as 0-d float64 tensors on the inputs' device, with no host sync: `bad` counts the
    scored positions whose target or prediction lies outside [0, num_classes) (the accuracies then mean nothing;
    `macro_accuracy` raises on them). Each accuracy is nan when no position is scored."""
    p, t = _flat(preds, "preds"), _flat(targets, "targets")
    if p.numel() != t.numel():
        raise ValueError(f"preds and targets must have the same number of elements, got {p.numel()} and {t.numel()}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    p = p.to(t.device)
    keep = t != ignore_index
    ok = keep & (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    bad = (keep & ~ok).sum().double()
    trash = torch.full_like(t, num_classes)
    tt, pp = torch.where(ok, t, trash), torch.where(ok, p, trash)

    def counts(index, weight):
        return torch.zeros(num_classes + 1, dtype=torch.float64, device=t.device).index_add_(
            0, index, weight.double())[:num_classes]

    support, predicted, hits = counts(tt, ok), counts(pp, ok), counts(tt, ok & (p == t))
    micro = hits.sum() / ok.sum().double()
    present = (support + predicted) > 0
    recall = torch.where(support > 0, hits / support.clamp(min=1), torch.zeros_like(hits))
    macro = (recall * present).sum() / present.sum().double()
    return macro, micro, bad


def check_ids(preds, targets, num_classes: int, ignore_index: int = IGNORE) -> None:
    """Raise a ValueError naming the first out-of-range id on a scored position (targets first), if any."""
    p, t = _flat(preds, "preds").cpu(), _flat(targets, "targets").cpu()
    keep = t != ignore_index
    for name, x in (("targets", t[keep]), ("preds", p[keep])):
        wrong = (x < 0) | (x >= num_classes)
        if wrong.any():
            raise ValueError(f"{name} on scored positions must lie in [0, {num_classes}), got {int(x[wrong][0])}")


def _checked(preds, targets, num_classes: int, ignore_index: int):
    macro, micro, bad = accuracies(preds, targets, num_classes, ignore_index)
    if bad.item():
        check_ids(preds, targets, num_classes, ignore_index)
    return macro, micro


def micro_accuracy(preds, targets, num_classes: int, ignore_index: int = IGNORE) -> float:
    """Fraction of scored positions predicted correctly (plain token accuracy); nan if none."""
    return float(_checked(preds, targets, num_classes, ignore_index)[1])


def macro_accuracy(preds, targets, num_classes: int, ignore_index: int = IGNORE) -> float:
    """Mean per-class recall over scored positions, matching torchmetrics' macro average."""
    return float(_checked(preds, targets, num_classes, ignore_index)[0])
