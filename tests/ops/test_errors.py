"""Every bad argument of the public ops raises ValueError naming the argument and what is allowed."""
import pytest
import torch

from statemix.ops import bdlru, hlru


def hl(**kw):
    args = dict(logits=torch.randn(2, 5, 3, 3), v=torch.randn(2, 5, 3))
    args.update(kw)
    return hlru(**args)


def bd(**kw):
    args = dict(logits=torch.randn(2, 5, 3, 2, 3), v=torch.randn(2, 5, 3, 2))
    args.update(kw)
    return bdlru(**args)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: hl(norm="l2"), r"norm: got 'l2'; allowed: softmax, sigmoid, relu, tanh, linear, none"),
        (lambda: bd(norm="Softmax"), r"norm: got 'Softmax'"),
        (lambda: hl(backend="cuda"), r"backend: got 'cuda'; allowed: auto, reference, scan, triton"),
        (lambda: hl(logits=torch.randn(2, 5, 3)), r"logits: shape \(2, 5, 3\) is not \[B, T, N, M\+1\]"),
        (lambda: hl(logits=torch.randn(2, 5, 3, 1), v=torch.randn(2, 5, 3)), r"logits: .*M >= 1"),
        (lambda: hl(v=torch.randn(2, 5, 4)), r"v: shape \(2, 5, 4\) does not match .* expected \(2, 5, 3\)"),
        (lambda: bd(logits=torch.randn(2, 5, 3, 2, 4)), r"logits: shape \(2, 5, 3, 2, 4\) is not \[B, T, N, M, M\+1\]"),
        (lambda: bd(v=torch.randn(2, 5, 3)), r"v: shape \(2, 5, 3\) does not match"),
        (lambda: hl(logits=torch.randn(2, 5, 3, 3).int(), v=torch.randn(2, 5, 3).int()), r"logits: dtype torch.int32 is not supported; allowed: torch.float32"),
        (lambda: hl(v=torch.randn(2, 5, 3).double()), r"v: dtype torch.float64 differs from logits dtype torch.float32"),
        (lambda: hl(v=[1, 2]), r"v: expected a torch.Tensor, got list"),
        (lambda: hl(initial_state=torch.randn(2, 3)), r"initial_state: shape \(2, 3\); expected \(2, 3, 2\)"),
        (lambda: bd(initial_state=torch.zeros(2, 3, 2, dtype=torch.long)), r"initial_state: expected a floating-point"),
    ],
)
def test_bad_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_triton_backend_on_cpu_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"backend: 'triton' needs a CUDA tensor"):
        hl(backend="triton")


def test_auto_backend_on_cpu():
    from statemix.ops.dispatch import resolve_backend

    assert resolve_backend("auto", torch.zeros(1, 4096, 1, 2)) == "reference"
