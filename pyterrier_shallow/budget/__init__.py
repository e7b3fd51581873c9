"""Latency budgets: per-query latency, depth/latency trade-off sweeps, and a reranker that keeps to a budget."""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "BudgetedReranker": ".budgeted_reranker:BudgetedReranker",
    "Cascade": ".sweep:Cascade",
    "FIRST_STAGE": ".sweep:FIRST_STAGE",
    "LatencyReport": ".latency:LatencyReport",
    "SweepResult": ".sweep:SweepResult",
    "TokenCostModel": ".cost_model:TokenCostModel",
    "calibrate": ".cost_model:calibrate",
    "depth_grid": ".sweep:depth_grid",
    "latency_stats": ".latency:latency_stats",
    "measure_latency": ".latency:measure_latency",
    "plot_tradeoff": ".plot:plot_tradeoff",
    "sweep": ".sweep:sweep",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pyterrier_shallow.budget.budgeted_reranker import BudgetedReranker
    from pyterrier_shallow.budget.cost_model import TokenCostModel, calibrate
    from pyterrier_shallow.budget.latency import LatencyReport, latency_stats, measure_latency
    from pyterrier_shallow.budget.plot import plot_tradeoff
    from pyterrier_shallow.budget.sweep import FIRST_STAGE, Cascade, SweepResult, depth_grid, sweep

__all__ = [
    "FIRST_STAGE",
    "BudgetedReranker",
    "Cascade",
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
