"""What every recurrent layer shares: argument checks, initialisation and token-by-token stepping."""
from torch import nn

from statemix.checks import check_positive
from statemix.ops import BACKENDS, NORMS

INIT_STD = 0.02


def init_linear(module: nn.Module):
    """Every Linear weight ~ N(0, 0.02²) and bias 0, as the paper's backbone init (paper.md §1.5)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class RecurrentLayer(nn.Module):
    """Base of the H-LRU / BD-LRU layers: `[B, T, D] -> [B, T, D]` with an N·M state.

    Subclasses implement `forward(x, state=None, return_state=False)`.
    """

    def __init__(self, d_model, n, m, norm, backend, names):
        super().__init__()
        check_positive(**dict(zip(("d_model", *names), (d_model, n, m))))
        if norm not in NORMS:
            raise ValueError(f"norm: got {norm!r}; allowed: {', '.join(NORMS)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: got {backend!r}; allowed: {', '.join(BACKENDS)}")
        self.d_model, self.norm, self.backend = d_model, norm, backend
        self.state_size = n * m

    def step(self, x_t, state=None):
        """One token: x_t `[B, D]`, state `[B, N, M]` or None -> (y_t `[B, D]`, new state)."""
        y, final = self.forward(x_t[:, None], state, return_state=True)
        return y[:, 0], final
