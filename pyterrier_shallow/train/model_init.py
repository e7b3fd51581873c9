"""Building a cross-encoder to train: any checkpoint, or the first layers of a larger one, with a one-logit head."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from .._hf import load_pretrained, minilm_path, quiet_transformers
from .._io import atomic_write_dir, atomic_write_json
from .._tokenizers import prepare_tokenizer  # noqa: F401 - re-exported for training code

INIT_INFO_FILE = "model_init.json"


def resolve_checkpoint(checkpoint: str | os.PathLike) -> str:
    """Maps the alias ``"minilm"`` to the offline all-MiniLM-L6-v2 directory; other values pass through."""
    return str(minilm_path()) if str(checkpoint) == "minilm" else str(checkpoint)


def load_cross_encoder(
    checkpoint: str | os.PathLike, *, num_layers: int | None = None
) -> tuple[PreTrainedModel, object, dict]:
    """Loads ``checkpoint`` as a one-logit sequence classifier, keeping only its first ``num_layers`` layers.

    Args:
        checkpoint: A hub id, a local directory, or ``"minilm"`` (the offline all-MiniLM-L6-v2).
        num_layers: Keep the first this many transformer layers (``None``: all of them).

    Returns:
        The model, its tokenizer, and a dict saying what was loaded and which weights were freshly initialised.
    """
    from ..gated import register_auto_classes

    register_auto_classes()  # gated checkpoints load through the Auto classes too
    source = resolve_checkpoint(checkpoint)
    overrides: dict = {"num_labels": 1}
    if num_layers is not None:
        config = load_pretrained(AutoConfig, source)
        available = getattr(config, "num_hidden_layers", None)
        if num_layers < 1 or (available is not None and num_layers > available):
            raise ValueError(f"num_layers must lie in [1, {available}] for {source}, got {num_layers}")
        overrides["num_hidden_layers"] = num_layers
    with quiet_transformers():
        model, loading = load_pretrained(
            AutoModelForSequenceClassification, source, output_loading_info=True, **overrides
        )
        tokenizer = load_pretrained(AutoTokenizer, source)
    if model.config.num_labels != 1:
        raise ValueError(f"{source} has {model.config.num_labels} labels; a cross-encoder here needs one logit")
    info = {
        "checkpoint": str(checkpoint),
        "source": source,
        "architecture": type(model).__name__,
        "num_layers": int(model.config.num_hidden_layers),
        "fresh_weights": sorted(loading.get("missing_keys", [])),
    }
    return model, tokenizer, info


def head_parameter_names(model: PreTrainedModel) -> list[str]:
    """Returns the names of the parameters outside the model's encoder (the classification head)."""
    body = {id(param) for param in model.base_model.parameters()}
    return [name for name, param in model.named_parameters() if id(param) not in body]


def make_cls_contextual(model: PreTrainedModel, tokenizer) -> None:
    """Turns the first position from an attention sink into an ordinary, input-dependent token (in place).

    In sentence-embedding models trained with mean pooling (all-MiniLM-L6-v2 among them) the first position is a
    sink: its output hardly depends on the input (its spread across pairs is under 1% of its norm after two
    layers), so a classification head reading [CLS] starts with no signal and learns very slowly. Setting the first
    position embedding to the mean of the others, and the [CLS] token embedding to the mean token embedding, makes
    its output vary with the pair like any other token's (about 25% after two layers). The pooler, when the model
    has one, is reset to pass [CLS] through (identity weights, zero bias, then its tanh), so that this variation
    reaches the classification head instead of being squashed by weights never trained for ranking. The
    architecture is unchanged: the model remains an ordinary checkpoint.
    """
    embeddings = getattr(model.base_model, "embeddings", None)
    positions = getattr(embeddings, "position_embeddings", None)
    words = getattr(embeddings, "word_embeddings", None)
    if positions is None or words is None or tokenizer.cls_token_id is None:
        raise ValueError(f"{type(model).__name__} has no absolute position embeddings or [CLS] token to reset")
    with torch.no_grad():
        positions.weight[0] = positions.weight[1:].mean(dim=0)
        words.weight[tokenizer.cls_token_id] = words.weight.mean(dim=0)
        dense = getattr(getattr(model.base_model, "pooler", None), "dense", None)
        if dense is not None and dense.weight.shape[0] == dense.weight.shape[1]:
            dense.weight.copy_(torch.eye(dense.weight.shape[0]))
            dense.bias.zero_()


def init_cross_encoder(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    num_layers: int | None = None,
    max_length: int | None = None,
    contextual_cls: bool = False,
    seed: int = 0,
) -> Path:
    """Saves a cross-encoder to train, built from ``checkpoint``, as a ``save_pretrained`` directory.

    The model is a ``*ForSequenceClassification`` with one logit; weights the checkpoint lacks (the head, for a
    sentence-embedding checkpoint) are freshly initialised from ``seed``. The saved tokenizer has no fixed padding or
    truncation, and ``model_max_length`` equal to ``max_length``. A ``model_init.json`` records what was done.

    Args:
        checkpoint: A hub id, a local directory, or ``"minilm"`` (the offline all-MiniLM-L6-v2).
        output_dir: Where to save (replaced atomically if it exists).
        num_layers: Keep the first this many transformer layers (e.g. 2 of all-MiniLM-L6-v2's 6).
        max_length: The tokenizer's ``model_max_length`` (default: the model's position embeddings, capped at 512).
        contextual_cls: Reset the first position so that [CLS] depends on the input (see
            :func:`make_cls_contextual`); for sentence-embedding checkpoints, whose [CLS] is an attention sink.
        seed: Seeds the fresh weights.

    Returns:
        The output directory.
    """
    torch.manual_seed(seed)
    model, tokenizer, info = load_cross_encoder(checkpoint, num_layers=num_layers)
    positions = getattr(model.config, "max_position_embeddings", None) or 512
    if max_length is None:
        max_length = min(int(positions), 512)
    if max_length < 8 or max_length > positions:
        raise ValueError(f"max_length must lie in [8, {positions}], got {max_length}")
    prepare_tokenizer(tokenizer, max_length=max_length)
    if contextual_cls:
        make_cls_contextual(model, tokenizer)
    info.update({"max_length": max_length, "seed": seed, "head_parameters": head_parameter_names(model),
                 "contextual_cls": contextual_cls})

    def fill(folder: Path) -> None:
        with quiet_transformers():
            model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        atomic_write_json(folder / INIT_INFO_FILE, info)

    atomic_write_dir(output_dir, fill)
    return Path(output_dir)


def read_init_info(model_dir: str | os.PathLike) -> dict | None:
    """Returns the ``model_init.json`` of a directory made by :func:`init_cross_encoder`, if there is one."""
    path = Path(model_dir) / INIT_INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None
