"""Macro (MAD's torchmetrics default) and micro accuracy on hand-worked cases."""
import numpy as np
import pytest
import torch

from statemix.metrics import accuracies, check_ids, macro_accuracy, micro_accuracy


def test_hand_worked_case():
    # scored: 0->0, 0->0, 1->1, 1->1, 2->1 (4 of 5 right); the last position is unscored
    targets = np.array([[0, 0, 1, 1, 2, -100]])
    preds = np.array([[0, 0, 1, 1, 1, 2]])
    assert micro_accuracy(preds, targets, num_classes=5) == pytest.approx(0.8)
    # recall per class: 2/2, 2/2, 0/1; classes 3, 4 never occur -> mean of three
    assert macro_accuracy(preds, targets, num_classes=5) == pytest.approx(2 / 3)


def test_predicted_but_absent_class_counts_as_zero():
    targets = np.array([0, 0, 0, 0, 0])
    preds = np.array([0, 0, 0, 0, 1])
    assert micro_accuracy(preds, targets, 3) == pytest.approx(0.8)
    # class 0 recall 4/5, class 1 predicted once but never a target (tp+fp+fn > 0) -> 0
    assert macro_accuracy(preds, targets, 3) == pytest.approx(0.4)


def test_torch_inputs_and_ignore_index():
    targets = torch.tensor([[3, 3, 7, -1], [7, -1, -1, 3]])
    preds = torch.tensor([[3, 7, 7, 0], [7, 5, 5, 0]])
    # scored: 3->3, 3->7, 7->7, 7->7, 3->0: micro 3/5; recall 3: 1/3, 7: 2/2, 0: predicted -> 0
    assert micro_accuracy(preds, targets, 8, ignore_index=-1) == pytest.approx(0.6)
    assert macro_accuracy(preds, targets, 8, ignore_index=-1) == pytest.approx((1 / 3 + 1 + 0) / 3)


def test_nothing_scored_is_nan():
    t = np.full(4, -100)
    assert np.isnan(micro_accuracy(t, t, 2)) and np.isnan(macro_accuracy(t, t, 2))


@pytest.mark.parametrize("preds,targets,words", [
    (np.zeros(3, int), np.zeros(4, int), ["same number"]),
    (np.array([0, 9]), np.array([0, 1]), ["preds", "[0, 4)", "9"]),
    (np.array([0, 1]), np.array([0, 5]), ["targets", "5"]),
    (np.array([0.5, 1.0]), np.array([0, 1]), ["preds", "integer", "float64"]),
])
def test_bad_inputs(preds, targets, words):
    with pytest.raises(ValueError) as err:
        macro_accuracy(preds, targets, 4)
    for w in words:
        assert w in str(err.value)


def _by_hand(preds, targets, V, ignore):
    """Per-class recall by a plain loop over classes, the torchmetrics rule for which classes count."""
    pairs = [(p, t) for p, t in zip(preds.ravel().tolist(), targets.ravel().tolist()) if t != ignore]
    recalls = []
    for c in range(V):
        support = sum(t == c for _, t in pairs)
        if support or any(p == c for p, _ in pairs):
            recalls.append(sum(p == t == c for p, t in pairs) / support if support else 0.0)
    return sum(recalls) / len(recalls), sum(p == t for p, t in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(4))
def test_device_counts_equal_a_loop_over_classes(seed):
    """`accuracies` (the training loop's, counted where the tensors live) on random ids with ignored positions."""
    gen = torch.Generator().manual_seed(seed)
    V = 3 + seed * 5
    targets = torch.randint(0, V, (7, 33), generator=gen)
    targets[torch.rand(7, 33, generator=gen) < 0.3] = -100
    preds = torch.randint(0, V - 1, (7, 33), generator=gen)
    macro, micro, bad = accuracies(preds, targets, V)
    want_macro, want_micro = _by_hand(preds, targets, V, -100)
    assert bad.item() == 0
    assert macro.item() == pytest.approx(want_macro, abs=1e-12) and micro.item() == pytest.approx(want_micro, abs=1e-12)


def test_out_of_range_ids_are_counted_without_a_sync_and_named_by_check_ids():
    targets, preds = torch.tensor([0, 1, -100, 2]), torch.tensor([0, 7, 9, 2])
    assert accuracies(preds, targets, 3)[2].item() == 1  # the 9 sits on an ignored position
    with pytest.raises(ValueError, match=r"preds on scored positions must lie in \[0, 3\), got 7"):
        check_ids(preds, targets, 3)
