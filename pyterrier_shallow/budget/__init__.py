"""Latency budgets: per-query latency, depth/latency trade-off sweeps, and a reranker that keeps to a budget."""

from pyterrier_shallow.budget.budgeted_reranker import BudgetedReranker
from pyterrier_shallow.budget.cost_model import TokenCostModel, calibrate
from pyterrier_shallow.budget.latency import LatencyReport, latency_stats, measure_latency
from pyterrier_shallow.budget.plot import plot_tradeoff
from pyterrier_shallow.budget.sweep import FIRST_STAGE, SweepResult, depth_grid, sweep

__all__ = [
    "FIRST_STAGE",
    "BudgetedReranker",
    "LatencyReport",
    "SweepResult",
    "TokenCostModel",
    "calibrate",
    "depth_grid",
    "latency_stats",
    "measure_latency",
    "plot_tradeoff",
    "sweep",
]
