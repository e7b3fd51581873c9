"""Training shallow cross-encoders: losses, negative mining, training data, model initialisation and the loop."""

from .card import build_card, render_readme, write_card
from .data import MixedSource, PairsSource, RankingSource, TrainingGroup, TrainingSource, docs_from_corpus
from .distillation import DistillationSource, score_with_teacher
from .loop import TrainConfig, TrainingResult, train
from .losses import (
    LOSSES,
    BCELoss,
    GBCELoss,
    GroupLoss,
    MarginMSELoss,
    SoftLabelLoss,
    SoftmaxCELoss,
    bce_loss,
    gbce_beta,
    gbce_loss,
    make_loss,
    margin_mse_loss,
    soft_label_loss,
    softmax_ce_loss,
)
from .model_init import head_parameter_names, init_cross_encoder, load_cross_encoder
from .negatives import NegativePool, positives_by_query
from .pseudo_queries import pseudo_queries, pseudo_query_source
from .teacher import HybridTeacher, per_query_zscores
from .validation import RerankValidation, first_stage_candidates

__all__ = [
    "LOSSES",
    "BCELoss",
    "DistillationSource",
    "GBCELoss",
    "HybridTeacher",
    "GroupLoss",
    "MarginMSELoss",
    "MixedSource",
    "NegativePool",
    "PairsSource",
    "RankingSource",
    "RerankValidation",
    "SoftLabelLoss",
    "SoftmaxCELoss",
    "TrainConfig",
    "TrainingGroup",
    "TrainingResult",
    "TrainingSource",
    "bce_loss",
    "build_card",
    "docs_from_corpus",
    "first_stage_candidates",
    "gbce_beta",
    "gbce_loss",
    "head_parameter_names",
    "init_cross_encoder",
    "load_cross_encoder",
    "make_loss",
    "margin_mse_loss",
    "positives_by_query",
    "per_query_zscores",
    "pseudo_queries",
    "pseudo_query_source",
    "render_readme",
    "score_with_teacher",
    "soft_label_loss",
    "softmax_ce_loss",
    "train",
    "write_card",
]
