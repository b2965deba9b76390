"""Figures of the report, drawn with matplotlib from the per-seed summary table of statemix.aggregate.

Every function takes a tidy DataFrame and an output path, and writes one PNG atomically.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
from matplotlib import ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from statemix.io import atomic_write_bytes  # noqa: E402


def _save(fig: Figure, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _grid(n: int, width: float = 3.6, height: float = 3.0):
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _styles(names):
    """A fixed colour and marker per name, so an arch looks the same in every panel."""
    colours = matplotlib.colormaps["tab20"].colors
    markers = "osD^vP*Xh<>p"
    return {n: (colours[i % len(colours)], markers[i % len(markers)]) for i, n in enumerate(sorted(names))}


def _plain(value, _pos=None) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


class _PlainLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, with plain numbers as the labels."""

    def _num_to_string(self, x, vmin, vmax):
        return _plain(x)


def _label_log_axis(axis) -> None:
    """Plain-number labels on a log axis, also on minor ticks (2-9 x 10^k) when the data spans under about a
    decade and so shows at most one major tick."""
    axis.set_major_formatter(ticker.FuncFormatter(_plain))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.6)))


def scaling(summary, x: str, xlabel: str, path, tasks) -> None:
    """Accuracy against `x` (params or state size): one panel per task, one line per arch (Figure 1)."""
    tasks = [t for t in tasks if t in set(summary["task"])]
    styles = _styles(summary["arch"].unique())
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks):
        for arch, rows in summary[summary["task"] == task].groupby("arch"):
            rows = rows.sort_values(x)
            colour, marker = styles[arch]
            ax.errorbar(rows[x], rows["acc_mean"], yerr=rows["acc_std"].fillna(0.0), label=arch, color=colour,
                        marker=marker, markersize=4, capsize=2, linewidth=1)
        ax.set_xscale("log")
        _label_log_axis(ax.xaxis)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("test accuracy (macro)", fontsize=8)
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(len(handles), 8),
               fontsize=8, bbox_to_anchor=(0.5, 1.02 + 0.02 * math.ceil(len(handles) / 8)))
    fig.tight_layout()
    _save(fig, path)


def order(summary, path, tasks) -> None:
    """Accuracy against order / block size m, per task, one line per family (H-LRU, BD-LRU)."""
    tasks = [t for t in tasks if t in set(summary["task"])]
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks):
        rows = summary[summary["task"] == task]
        for family, fam_rows in rows.groupby("family"):
            fam_rows = fam_rows.sort_values("m")
            ax.errorbar(fam_rows["m"], fam_rows["acc_mean"], yerr=fam_rows["acc_std"].fillna(0.0), label=family,
                        marker="o", markersize=4, capsize=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("order / block size m", fontsize=8)
        ax.set_ylabel("test accuracy (macro)", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def norm(summary, variants, path, tasks) -> None:
    """Grouped bars: accuracy per normalisation, per arch, one panel per task (Figure 2)."""
    tasks = [t for t in tasks if t in set(summary["task"])]
    archs = sorted(summary["arch"].unique())
    fig, axes = _grid(len(tasks), width=4.5)
    step = 0.8 / max(len(archs), 1)
    for ax, task in zip(axes, tasks):
        rows = summary[summary["task"] == task].set_index(["arch", "variant"])
        for i, arch in enumerate(archs):
            means = [rows["acc_mean"].get((arch, v), float("nan")) for v in variants]
            stds = [rows["acc_std"].get((arch, v), 0.0) for v in variants]
            xs = [j + (i - (len(archs) - 1) / 2) * step for j in range(len(variants))]
            ax.bar(xs, means, width=step, yerr=[0.0 if s != s else s for s in stds], capsize=2, label=arch)
        ax.set_xticks(range(len(variants)), variants, rotation=30, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("test accuracy (macro)", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def lines(table, x: str, y: str, series, path, title: str, ylabel: str) -> None:
    """One line per combination of the `series` columns: `y` against `x`."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, rows in table.groupby(series):
        rows = rows.sort_values(x)
        ax.plot(rows[x], rows[y], marker="o", markersize=4, label=" ".join(map(str, name)))
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def learning_curves(curves, path, tasks) -> None:
    """Test accuracy against epoch, one panel per task, one line per (arch, width) run (the pilot)."""
    tasks = [t for t in tasks if t in set(curves["task"])]
    styles = _styles(curves["arch"].unique())
    fig, axes = _grid(len(tasks), width=4.2)
    for ax, task in zip(axes, tasks):
        panel = curves[curves["task"] == task]
        for (arch, width, seed), rows in panel.groupby(["arch", "width", "seed"]):
            colour, marker = styles[arch]
            dash = ("-", "--", ":", "-.")[sorted(panel.loc[panel["arch"] == arch, "width"].unique()).index(width) % 4]
            ax.plot(rows["epoch"], rows["test_acc"], color=colour, marker=marker, markersize=2, linewidth=1, linestyle=dash,
                    markevery=max(len(rows) // 8, 1), label=f"{arch} w{width}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("test accuracy (macro)", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)


def errorbars(table, x: str, y: str, yerr: str, series: str, path, xlabel: str, ylabel: str, title: str) -> None:
    """One line per value of `series`: `y` ± `yerr` against `x` on a log axis (e.g. perplexity vs size)."""
    styles = _styles(table[series].unique())
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, rows in table.groupby(series):
        rows = rows.sort_values(x)
        colour, marker = styles[name]
        ax.errorbar(rows[x], rows[y], yerr=rows[yerr].fillna(0.0), label=name, color=colour, marker=marker,
                    markersize=4, capsize=2, linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
