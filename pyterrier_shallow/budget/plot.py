"""The effectiveness / latency plot of a sweep: one line per reranker, one point per rerank depth."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pyterrier_shallow._io import atomic_write_with
from pyterrier_shallow.budget.sweep import FIRST_STAGE, SweepResult


def plot_tradeoff(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    budgets_ms: Sequence[float] = (),
    title: str | None = None,
) -> Path:
    """Draws the measure against mean latency (log scale), one line per reranker, and saves it as a PNG.

    Each point is labelled with its depth k; the first stage alone is a single marker; each budget is a dotted
    vertical line; the legend sits below the axes, where it hides no point. The file is written to a temporary name
    beside ``path`` and renamed into place.

    Args:
        result: The sweep.
        path: Where to save the PNG.
        budgets_ms: Budgets to mark.
        title: The plot's title (default: what was measured).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    table = result.table
    figure, axes = plt.subplots(figsize=(7, 5.5))
    first = table[table["model"] == FIRST_STAGE]
    if not first.empty:
        axes.scatter(first["mean_ms"], first[result.measure], marker="s", color="black", label=FIRST_STAGE, zorder=3)
    for model, rows in table[table["model"] != FIRST_STAGE].groupby("model", sort=False):
        rows = rows.sort_values("depth")
        axes.plot(rows["mean_ms"], rows[result.measure], marker="o", label=model)
        for _, row in rows.iterrows():
            axes.annotate(
                str(int(row["depth"])),
                (row["mean_ms"], row[result.measure]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    for budget in budgets_ms:
        axes.axvline(budget, linestyle=":", color="grey", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("mean latency per query (ms, log scale; first stage + reranking)")
    axes.set_ylabel(result.measure)
    axes.set_title(title or f"{result.measure} against latency (labels: rerank depth k)", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)  # off the lines
    figure.tight_layout()
    try:
        atomic_write_with(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    finally:
        plt.close(figure)
    return path
