"""LSTM mixer as the paper's fork wraps it: `nn.LSTM(D -> hidden)`, zero initial state, bias-free output Linear."""
import torch
from torch import nn

from statemix.checks import check_positive


class LSTM(nn.Module):
    """x `[B, T, D]` -> `[B, T, D]`. State (h, c), each `[B, hidden]`: state size 2 * hidden."""

    def __init__(self, d_model, hidden):
        super().__init__()
        check_positive(d_model=d_model, hidden=hidden)
        self.hidden = hidden
        self.state_size = 2 * hidden
        self.lstm = nn.LSTM(d_model, hidden, batch_first=True)
        self.proj_out = nn.Linear(hidden, d_model, bias=False)

    def _recur(self, x, state=None):
        """nn.LSTM, in fp32 under CPU autocast: oneDNN's bf16 LSTM fails on CPUs without bf16 support."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                state = None if state is None else tuple(s.float() for s in state)
                return self.lstm(x.float(), state)
        return self.lstm(x, state)

    def forward(self, x):
        return self.proj_out(self._recur(x)[0])

    def step(self, x_t, state=None):
        """One token: x_t `[B, D]`, state (h, c) `[1, B, hidden]` each or None -> (y_t `[B, D]`, state)."""
        y, state = self._recur(x_t[:, None], state)
        return self.proj_out(y[:, 0]), state
