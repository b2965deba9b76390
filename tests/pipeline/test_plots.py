"""Figures: a log x axis spanning less than a decade still labels its ticks with the plotted values' scale."""
import pandas as pd
import pytest

from statemix import plots


@pytest.mark.parametrize("low, high", [(3_000, 9_000), (1_200, 60_000), (20, 2_000_000)])
def test_log_x_axis_has_readable_tick_labels(monkeypatch, tmp_path, low, high):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    summary = pd.DataFrame({"task": "S5", "arch": ["lru", "lru"], "params_total": [low, high],
                            "acc_mean": [0.2, 0.4], "acc_std": [0.0, 0.0]})
    plots.scaling(summary, "params_total", "parameters", tmp_path / "f.png", ["S5"])
    (fig,) = figures
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    labels = [(t.get_position()[0], t.get_text()) for which in ("major", "minor")
              for t in ax.get_xticklabels(which=which) if t.get_text() and lo <= t.get_position()[0] <= hi]
    assert len(labels) >= 2, labels
    for x, text in labels:
        assert float(text.replace(",", "")) == pytest.approx(x, rel=1e-6)
    assert len(labels) <= 12
