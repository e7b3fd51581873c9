"""The anchor's weights as trainable parameters: a reranker learns how much of the first stage to keep."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..anchor import Anchor


def row_zscores(scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standardises each row of ``scores`` (one query's candidates); rows without spread become 0."""
    centred = scores - scores.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    return torch.where(std > eps, centred / std.clamp_min(eps), torch.zeros_like(centred))


class LearnedAnchor(nn.Module):
    """``first_stage * z(first-stage scores) + model * z(model scores)`` per group, with both weights learnt.

    The weights are kept as logarithms so that they stay positive. The z-scores are taken over each training group
    (the query's sampled candidates), as an anchored reranker takes them over the candidates it is given.

    Args:
        first_stage: The first stage's initial weight (the teacher's mix, say).
        model: The model's initial weight.
    """

    def __init__(self, first_stage: float = 1.0, model: float = 1.0):
        super().__init__()
        if not (first_stage > 0 and model > 0 and math.isfinite(first_stage) and math.isfinite(model)):
            raise ValueError(f"anchor weights must be positive and finite, got {first_stage}, {model}")
        self.log_weights = nn.Parameter(torch.tensor([math.log(first_stage), math.log(model)], dtype=torch.float32))

    def forward(self, logits: torch.Tensor, first_stage: torch.Tensor) -> torch.Tensor:
        """Mixes ``logits`` (groups x candidates) with the ``first_stage`` scores of the same candidates."""
        weights = self.log_weights.exp()
        return weights[0] * row_zscores(first_stage.to(logits.dtype)) + weights[1] * row_zscores(logits)

    def anchor(self, source: str = "learnt in training") -> Anchor:
        """The current weights as an :class:`~pyterrier_shallow.Anchor` (what a trained model's folder keeps)."""
        first_stage, model = (float(value) for value in self.log_weights.detach().exp().cpu())
        return Anchor(first_stage=round(first_stage, 6), model=round(model, 6), source=source)
