"""Weight-space interpolation between a gated cross-encoder and the bi-encoder it began as.

A gated cross-encoder warm-started from its bi-encoder scores, with closed gates, exactly as that bi-encoder's
cosine. Training moves every weight away from there. Taking ``start + weight * (trained - start)`` for every weight
(the gates included, so ``weight = 0`` closes them) gives a family of models between the two: ``0`` is the
bi-encoder, ``1`` the trained model. Such interpolations are often better than either end on data neither was chosen
on (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022); the weight is chosen by validation.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
from pathlib import Path

import torch

from pyterrier_shallow.gated.model import GatedBertRanker


def interpolate_weights(start: GatedBertRanker, end: GatedBertRanker, weight: float) -> GatedBertRanker:
    """A copy of ``end`` whose every floating-point weight is ``start + weight * (end - start)``.

    Args:
        start: The model's warm start (e.g. :func:`~pyterrier_shallow.gated.gated_from_bi_encoder` of its bi-encoder).
        end: The trained model, with the same architecture.
        weight: Where between the two: ``0`` is ``start``, ``1`` is ``end`` (any finite value is accepted).

    Returns:
        A new model in eval mode (``start`` and ``end`` are left unchanged). Buffers that are not weights (the
        token-match term's term weights, position ids) are ``end``'s.

    Raises:
        ValueError: When the weight is not finite or the two models' configurations or weights do not match.
    """
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
        raise ValueError(f"the interpolation weight must be a finite number, got {weight!r}")
    for model, name in ((start, "start"), (end, "end")):
        if not isinstance(model, GatedBertRanker):
            raise ValueError(f"{name} must be a GatedBertRanker, got {type(model).__name__}")
    keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "feed_forward_sizes",
            "match_term", "query_gates", "cross_layers", "vocab_size")
    differ = [key for key in keys if getattr(start.config, key, None) != getattr(end.config, key, None)]
    if differ:
        raise ValueError(f"start and end differ in their configuration ({', '.join(differ)}); "
                         "interpolate a model with its own warm start")
    start_state = dict(start.named_parameters())
    end_state = end.state_dict()
    mixed = {}
    for name, tensor in end_state.items():
        if name not in start_state:
            continue
        begin = start_state[name].detach().to(tensor)
        if begin.shape != tensor.shape:
            raise ValueError(f"{name} has shape {tuple(begin.shape)} in start and {tuple(tensor.shape)} in end")
        mixed[name] = begin + float(weight) * (tensor - begin)
    model = GatedBertRanker(copy.deepcopy(end.config))
    model.load_state_dict({**end_state, **mixed})
    return model.eval()


def interpolate_from_warm_start(trained: str | os.PathLike, weight: float,
                                start: str | os.PathLike | None = None) -> tuple[GatedBertRanker, object]:
    """Loads a trained gated cross-encoder and moves it back toward its warm start by ``1 - weight``.

    Args:
        trained: The trained model's folder (a delta or a full checkpoint).
        weight: ``0`` gives the warm start (closed gates), ``1`` the trained model.
        start: The warm start's folder (``None``: all-MiniLM-L6-v2 cut to the trained model's depth, gates closed,
            which is how ``pyterrier-shallow train --init gated:minilm`` begins; refused for a model whose training
            card records another warm start).

    Returns:
        The interpolated model (eval mode) and the trained model's tokenizer.
    """
    from pyterrier_shallow.gated.build import gated_from_bi_encoder, load_gated

    end, tokenizer = load_gated(trained)
    if start is None:
        began_as = _recorded_warm_start(trained)
        if began_as not in (None, "minilm"):
            raise ValueError(f"{trained} began as {began_as!r}, not all-MiniLM-L6-v2 (its training card says so); "
                             "pass that warm start as start")
        begin, _ = gated_from_bi_encoder(num_layers=end.config.num_hidden_layers,
                                         score_scale=float(end.config.score_scale))
        begin = _configured_like(begin, end)
    else:
        begin, _ = load_gated(start)
    return interpolate_weights(begin, end, weight), tokenizer


def _configured_like(begin: GatedBertRanker, end: GatedBertRanker) -> GatedBertRanker:
    """``begin``'s weights in ``end``'s configuration, so that the two can be interpolated.

    ``end``'s settings that change no weight (the layers that read the query, the token-match term) are taken over
    with the warm start's values: closed gates, and a token-match term of weight 0 with ``end``'s term weights. Shapes
    that differ (a pruned feed-forward block) are refused.
    """
    model = GatedBertRanker(copy.deepcopy(end.config))
    state = {**model.state_dict(), **begin.state_dict()}
    if end.config.match_term:
        state.update(match_weight=torch.zeros(()), term_weights=end.term_weights.detach().clone())
    if end.config.query_gates:
        state.update(query_gates=torch.zeros_like(end.query_gates))
    mismatched = [name for name, tensor in model.state_dict().items() if state[name].shape != tensor.shape]
    if mismatched:
        raise ValueError(f"the warm start does not have the trained model's shapes ({', '.join(mismatched)}); "
                         "pass the warm start it was trained from as start")
    model.load_state_dict(state)
    return model.eval()


def _recorded_warm_start(folder: str | os.PathLike) -> str | None:
    """The warm start a trained model's ``training_card.json`` records (``None``: no card, or none recorded)."""
    card = Path(folder) / "training_card.json"
    if not card.is_file():
        return None
    init = json.loads(card.read_text(encoding="utf-8")).get("base_model", {}).get("init", {})
    return init.get("checkpoint") if isinstance(init, dict) else None
