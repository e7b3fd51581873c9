"""Losses over groups of logits shaped ``(queries, 1 + k)``: column 0 the positive, columns 1..k the negatives.

Every loss is a plain function and an ``nn.Module`` (:class:`GroupLoss`) that the training loop calls as
``loss(logits, pool_sizes=..., teacher_scores=...)``. All are written with ``logsigmoid`` / ``softplus`` /
``log_softmax``, so that logits of any magnitude give finite values and gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_logits(logits: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must be shaped (queries, 1 + k) with k >= 1 negatives, got {tuple(logits.shape)}"
        )


def _check_teacher(logits: torch.Tensor, teacher_scores: torch.Tensor | None) -> torch.Tensor:
    if teacher_scores is None:
        raise ValueError("this loss distils a teacher: pass teacher_scores shaped like the logits")
    if teacher_scores.shape != logits.shape:
        raise ValueError(f"teacher_scores {tuple(teacher_scores.shape)} must match logits {tuple(logits.shape)}")
    return teacher_scores.to(dtype=logits.dtype, device=logits.device)


def gbce_beta(num_negatives: int, pool_size: int | torch.Tensor, t: float) -> torch.Tensor:
    """Returns gBCE's exponent beta = alpha * (t * (1 - 1/alpha) + 1/alpha), with alpha = k / N.

    This equals ``1 - t * (1 - alpha)``: ``t = 0`` gives beta = 1 (plain BCE), ``t = 1`` gives beta = alpha (fully
    calibrated), and alpha = 1 (every candidate of the pool sampled) gives beta = 1 for any ``t``.

    Args:
        num_negatives: k, the negatives sampled per query.
        pool_size: N, the candidates they were sampled from (an int, or one per query); clipped below at k.
        t: The calibration parameter, in [0, 1].
    """
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    pool = torch.as_tensor(pool_size, dtype=torch.float64)
    if (pool < 1).any():
        raise ValueError(f"pool_size must be positive, got {pool_size}")
    alpha = num_negatives / torch.clamp(pool, min=float(num_negatives))
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_loss(logits: torch.Tensor, pool_size: int | torch.Tensor, *, t: float = 0.75) -> torch.Tensor:
    """Generalised binary cross-entropy (gBCE), averaged over queries.

    ``L = -(1/(k+1)) * [beta * log sigma(s+) + sum_j log(1 - sigma(s_j-))]`` with beta from :func:`gbce_beta`.

    Args:
        logits: Scores shaped ``(queries, 1 + k)``, the positive in column 0.
        pool_size: N, the number of candidates the k negatives were sampled from (an int, or one per query).
        t: The calibration parameter in [0, 1] (0: plain BCE).
    """
    _check_logits(logits)
    num_negatives = logits.shape[1] - 1
    beta = gbce_beta(num_negatives, pool_size, t).to(device=logits.device, dtype=logits.dtype)
    positive = beta * F.logsigmoid(logits[:, 0])
    negatives = F.logsigmoid(-logits[:, 1:]).sum(dim=1)
    return -((positive + negatives) / logits.shape[1]).mean()


def bce_loss(logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with the positive in column 0, ``-(1/(k+1)) * sum log p(label)`` averaged over queries."""
    _check_logits(logits)
    per_query = F.logsigmoid(logits[:, 0]) + F.logsigmoid(-logits[:, 1:]).sum(dim=1)
    return -(per_query / logits.shape[1]).mean()


def softmax_ce_loss(logits: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over each group (the positive is class 0), averaged over queries."""
    _check_logits(logits)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def margin_mse_loss(logits: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """MarginMSE: the squared error between the student's and the teacher's margins ``s_0 - s_j``.

    Args:
        logits: The student's scores shaped ``(queries, 1 + k)``.
        teacher_scores: The teacher's scores of the same pairs, same shape.
    """
    _check_logits(logits)
    teacher_scores = _check_teacher(logits, teacher_scores)
    student_margin = logits[:, :1] - logits[:, 1:]
    teacher_margin = teacher_scores[:, :1] - teacher_scores[:, 1:]
    return F.mse_loss(student_margin, teacher_margin)


def soft_label_loss(logits: torch.Tensor, teacher_scores: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """KL divergence from the teacher's softmax over each group to the student's, averaged over queries.

    Args:
        logits: The student's scores shaped ``(queries, 1 + k)``.
        teacher_scores: The teacher's scores of the same pairs, same shape.
        temperature: Divides both teacher and student scores before the softmax.
    """
    _check_logits(logits)
    teacher_scores = _check_teacher(logits, teacher_scores)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    student = F.log_softmax(logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_scores / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True)


class GroupLoss(nn.Module):
    """A loss over groups of logits; subclasses say whether they need a teacher and describe themselves."""

    name: str = ""
    needs_teacher: bool = False

    def forward(
        self,
        logits: torch.Tensor,
        *,
        pool_sizes: torch.Tensor | None = None,
        teacher_scores: torch.Tensor | None = None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Returns the scalar loss of ``logits`` shaped ``(queries, 1 + k)``."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Returns the loss's name and parameters, for the training card."""
        return {"name": self.name}


class GBCELoss(GroupLoss):
    """gBCE (see :func:`gbce_loss`); needs the pool size each query's negatives were sampled from.

    Args:
        t: The calibration parameter in [0, 1] (0: plain BCE, 1: beta = alpha).
    """

    name = "gbce"

    def __init__(self, t: float = 0.75):
        super().__init__()
        gbce_beta(1, 1, t)  # validates t
        self.t = t

    def forward(self, logits, *, pool_sizes=None, teacher_scores=None):
        """Returns the gBCE loss; ``pool_sizes`` (one per query) is required."""
        if pool_sizes is None:
            raise ValueError("gBCE needs pool_sizes: the number of candidates each query's negatives came from")
        return gbce_loss(logits, pool_sizes, t=self.t)

    def describe(self) -> dict:
        """Returns ``{"name": "gbce", "t": t}``."""
        return {"name": self.name, "t": self.t}


class BCELoss(GroupLoss):
    """Binary cross-entropy (see :func:`bce_loss`)."""

    name = "bce"

    def forward(self, logits, *, pool_sizes=None, teacher_scores=None):
        """Returns the BCE loss."""
        return bce_loss(logits)


class SoftmaxCELoss(GroupLoss):
    """Softmax cross-entropy over each group (see :func:`softmax_ce_loss`)."""

    name = "softmax-ce"

    def forward(self, logits, *, pool_sizes=None, teacher_scores=None):
        """Returns the softmax cross-entropy loss."""
        return softmax_ce_loss(logits)


class MarginMSELoss(GroupLoss):
    """MarginMSE distillation (see :func:`margin_mse_loss`)."""

    name = "margin-mse"
    needs_teacher = True

    def forward(self, logits, *, pool_sizes=None, teacher_scores=None):
        """Returns the MarginMSE loss against ``teacher_scores``."""
        return margin_mse_loss(logits, teacher_scores)


class SoftLabelLoss(GroupLoss):
    """Soft-label (listwise KL) distillation (see :func:`soft_label_loss`).

    Args:
        temperature: Divides teacher and student scores before the softmax.
    """

    name = "soft-label"
    needs_teacher = True

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, logits, *, pool_sizes=None, teacher_scores=None):
        """Returns the KL divergence to the teacher's soft labels."""
        return soft_label_loss(logits, teacher_scores, temperature=self.temperature)

    def describe(self) -> dict:
        """Returns ``{"name": "soft-label", "temperature": temperature}``."""
        return {"name": self.name, "temperature": self.temperature}


LOSSES: dict[str, type[GroupLoss]] = {
    cls.name: cls for cls in (GBCELoss, BCELoss, SoftmaxCELoss, MarginMSELoss, SoftLabelLoss)
}


def make_loss(name: str, **params) -> GroupLoss:
    """Builds a loss by name (``gbce``, ``bce``, ``softmax-ce``, ``margin-mse``, ``soft-label``).

    Args:
        name: The loss's name.
        **params: Its parameters (``t`` for gBCE, ``temperature`` for soft labels).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name](**params)
