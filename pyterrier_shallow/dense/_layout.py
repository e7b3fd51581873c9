"""Reading how a checkpoint turns token vectors into a text vector (sentence-transformers layout or plain HF)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pyterrier_shallow._hf import describe_source

_POOLING_NAMES = {
    "mean": "mean",
    "cls": "cls",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weighted_mean",
    "lasttoken": "last",
}
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class EncoderLayout:
    """What a checkpoint says about encoding a text into one vector.

    Attributes:
        weights: The local directory or hub id holding the Hugging Face model and tokenizer.
        subfolder: The folder of the model inside a hub repository (``""`` for its root).
        pooling: The pooling mode (see :data:`~pyterrier_shallow.dense._pooling.POOLING_MODES`), or ``None`` when the
            checkpoint does not say (plain Hugging Face checkpoints).
        normalize: Whether vectors are L2-normalised, or ``None`` when the checkpoint does not say.
        max_length: The most tokens the checkpoint was trained to read, or ``None`` when it does not say.
        dimension: The size of the vectors, when the checkpoint states it.
        query_prompt: A text put before every query (sentence-transformers ``prompts["query"]``).
        doc_prompt: A text put before every document (``prompts["document"]`` or ``prompts["passage"]``).
        sentence_transformers: Whether ``modules.json`` was found.
    """

    weights: str
    subfolder: str = ""
    pooling: str | None = None
    normalize: bool | None = None
    max_length: int | None = None
    dimension: int | None = None
    query_prompt: str = ""
    doc_prompt: str = ""
    sentence_transformers: bool = False


def read_layout(source: str | os.PathLike) -> EncoderLayout:
    """Reads ``modules.json``, ``1_Pooling/config.json`` and ``sentence_bert_config.json`` of a checkpoint.

    A checkpoint without ``modules.json`` is a plain Hugging Face model: pooling and normalisation are left to the
    caller. A hub id is looked up in the local Hugging Face cache (or downloaded when the hub can be reached).

    Args:
        source: A local directory or a hub id.

    Raises:
        ValueError: When the checkpoint uses a module other than Transformer, Pooling and Normalize (a Dense
            projection, for instance), or pools in a way that cannot be reproduced.
    """
    modules = _read_json(source, "modules.json")
    if modules is None:
        return EncoderLayout(weights=str(source))
    kinds = {}
    for module in sorted(modules, key=lambda entry: entry.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _SUPPORTED_MODULES:
            raise ValueError(
                f"{describe_source(source)} has a {module.get('type')!r} module; BiEncoder reads only "
                f"sentence-transformers checkpoints made of {', '.join(_SUPPORTED_MODULES)} modules"
            )
        kinds[kind] = module.get("path", "")
    if "Transformer" not in kinds:
        raise ValueError(f"{describe_source(source)}: modules.json lists no Transformer module")

    subfolder = kinds["Transformer"]
    bert_config = _read_json(source, _join(subfolder, "sentence_bert_config.json")) or {}
    tokenizer_config = _read_json(source, _join(subfolder, "tokenizer_config.json")) or {}
    pooling, dimension, include_prompt = "cls", None, True
    if "Pooling" in kinds:
        pooling_config = _read_json(source, _join(kinds["Pooling"], "config.json")) or {}
        pooling = _pooling_mode(pooling_config, source)
        dimension = pooling_config.get("embedding_dimension", pooling_config.get("word_embedding_dimension"))
        include_prompt = pooling_config.get("include_prompt", True)
    prompts = (_read_json(source, "config_sentence_transformers.json") or {}).get("prompts") or {}
    query_prompt = prompts.get("query") or ""
    doc_prompt = prompts.get("document") or prompts.get("passage") or ""
    if not include_prompt and (query_prompt or doc_prompt):
        raise ValueError(f"{describe_source(source)} pools without its prompt tokens, which BiEncoder cannot do")

    max_length = bert_config.get("max_seq_length")
    if max_length is None:
        model_max_length = tokenizer_config.get("model_max_length")
        if isinstance(model_max_length, int) and model_max_length < 1_000_000:
            max_length = model_max_length
    weights, hub_subfolder = str(source), subfolder
    if Path(source).is_dir():
        weights, hub_subfolder = str(Path(source) / subfolder), ""
    return EncoderLayout(
        weights=weights,
        subfolder=hub_subfolder,
        pooling=pooling,
        normalize="Normalize" in kinds,
        max_length=max_length,
        dimension=dimension,
        query_prompt=query_prompt,
        doc_prompt=doc_prompt,
        sentence_transformers=True,
    )


def _pooling_mode(config: dict, source: str | os.PathLike) -> str:
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [name for key, name in _LEGACY_POOLING_KEYS.items() if config.get(key)]
        mode = modes if len(modes) != 1 else modes[0]
        mode = mode or "mean"
    if isinstance(mode, list | tuple):
        if len(mode) != 1:
            raise ValueError(f"{describe_source(source)} concatenates poolings {list(mode)}; BiEncoder pools one way")
        mode = mode[0]
    if mode not in _POOLING_NAMES:
        raise ValueError(f"{describe_source(source)} pools with {mode!r}, which BiEncoder does not support")
    return _POOLING_NAMES[mode]


def _join(folder: str, name: str) -> str:
    return f"{folder.strip('/')}/{name}" if folder.strip("/") else name


def _read_json(source: str | os.PathLike, relative: str) -> dict | list | None:
    """Reads a JSON file of a local checkpoint or a hub repository; ``None`` when it does not exist."""
    if Path(source).is_dir():
        path = Path(source) / relative
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(str(source), relative))
        except (OSError, ValueError):  # not on the hub, not cached while offline, or not a valid repository id
            return None
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
