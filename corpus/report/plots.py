"""Figures of the report, drawn with matplotlib (Agg backend) and embedded as base64 PNG data URIs,
so the page needs no network and no script to show them."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"text": "#4C72B0", "image": "#DD8452", "text_image": "#55A868", "hard": "#8172B3", "concat": "#C44E52"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def hbar(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str = "rows") -> str:
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(labels), 3) + 0.8))
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#4C72B0")
    for i, v in enumerate(list(values)[::-1]):
        ax.text(v, i, f" {v:g}", va="center", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    return _png(fig)


def stacked(categories: Sequence[str], series: dict[str, Sequence[float]], title: str, ylabel: str = "rows") -> str:
    """Vertical bars per category, one stacked segment per series key."""
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(categories) + 2), 3.6))
    bottom = [0.0] * len(categories)
    for name, values in series.items():
        ax.bar(categories, values, bottom=bottom, label=name, color=COLORS.get(name))
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    plt.setp(ax.get_xticklabels(), ha="right")
    ax.legend(fontsize=8)
    return _png(fig)


def histograms(data: dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 20) -> str:
    """One overlaid histogram per key (e.g. per modality)."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.2))
    every = [v for values in data.values() for v in values]
    edges = np.histogram_bin_edges(every, bins=bins) if every else bins
    for name, values in data.items():
        if len(values):
            ax.hist(values, bins=edges, alpha=0.6, label=f"{name} (n={len(values)})", color=COLORS.get(name))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    return _png(fig)


def bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str, ylim: float | None = None) -> str:
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(labels) + 2), 3.2))
    ax.bar(list(labels), list(values), color="#55A868")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    plt.setp(ax.get_xticklabels(), ha="right")
    return _png(fig)
