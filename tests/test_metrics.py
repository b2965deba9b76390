"""Macro (MAD's torchmetrics default) and micro accuracy on hand-worked cases."""
import numpy as np
import pytest
import torch

from statemix.metrics import macro_accuracy, micro_accuracy


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
