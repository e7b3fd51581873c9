"""Training shallow cross-encoders: losses, negative mining, training data, model initialisation and the loop."""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "BCELoss": ".losses:BCELoss",
    "DistillationSource": ".distillation:DistillationSource",
    "GBCELoss": ".losses:GBCELoss",
    "GroupLoss": ".losses:GroupLoss",
    "HybridTeacher": ".teacher:HybridTeacher",
    "LOSSES": ".losses:LOSSES",
    "MarginMSELoss": ".losses:MarginMSELoss",
    "MixedSource": ".data:MixedSource",
    "NegativePool": ".negatives:NegativePool",
    "PairsSource": ".data:PairsSource",
    "RankingSource": ".data:RankingSource",
    "RerankValidation": ".validation:RerankValidation",
    "SoftLabelLoss": ".losses:SoftLabelLoss",
    "SoftmaxCELoss": ".losses:SoftmaxCELoss",
    "TrainConfig": ".loop:TrainConfig",
    "TrainingGroup": ".data:TrainingGroup",
    "TrainingResult": ".loop:TrainingResult",
    "TrainingSource": ".data:TrainingSource",
    "bce_loss": ".losses:bce_loss",
    "build_card": ".card:build_card",
    "docs_from_corpus": ".data:docs_from_corpus",
    "first_stage_candidates": ".validation:first_stage_candidates",
    "gbce_beta": ".losses:gbce_beta",
    "gbce_loss": ".losses:gbce_loss",
    "head_parameter_names": ".model_init:head_parameter_names",
    "init_cross_encoder": ".model_init:init_cross_encoder",
    "load_cross_encoder": ".model_init:load_cross_encoder",
    "make_loss": ".losses:make_loss",
    "margin_mse_loss": ".losses:margin_mse_loss",
    "per_query_zscores": ".teacher:per_query_zscores",
    "positives_by_query": ".negatives:positives_by_query",
    "pseudo_queries": ".pseudo_queries:pseudo_queries",
    "pseudo_query_source": ".pseudo_queries:pseudo_query_source",
    "render_readme": ".card:render_readme",
    "score_with_teacher": ".distillation:score_with_teacher",
    "soft_label_loss": ".losses:soft_label_loss",
    "softmax_ce_loss": ".losses:softmax_ce_loss",
    "train": ".loop:train",
    "write_card": ".card:write_card",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
