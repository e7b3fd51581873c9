"""A shallower bi-encoder: the first layers of a sentence-transformers checkpoint, saved as its own checkpoint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pyterrier_shallow._hf import minilm_path, quiet_transformers
from pyterrier_shallow._io import atomic_write_dir

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def save_first_layers(directory: str | os.PathLike, num_layers: int, source: str | os.PathLike | None = None) -> Path:
    """Saves the first ``num_layers`` transformer layers of a bi-encoder as a checkpoint ``BiEncoder`` loads.

    The embeddings, the kept layers, the tokenizer and the pooling set-up are those of ``source``; the later layers
    are dropped, so encoding costs about ``num_layers / L`` of the whole model's. Nothing is retrained: the result is
    the whole model's intermediate representation, pooled the same way, a cheaper and usually weaker scorer (the
    latency-budget sweep in docs/budget.md measures both). The folder is written atomically.

    Example::

        from pyterrier_shallow.dense import BiEncoder, save_first_layers

        scorer = BiEncoder(save_first_layers("./minilm-l2", 2)).text_scorer()

    Args:
        directory: Where to write the checkpoint (replaced if present).
        num_layers: How many layers to keep, from 1 to the model's number of layers.
        source: A local sentence-transformers folder (default: the bundled all-MiniLM-L6-v2).

    Raises:
        ValueError: When ``source`` is not a local folder with a config, or ``num_layers`` is out of range.
    """
    from transformers import AutoConfig, AutoModel

    source = Path(minilm_path() if source is None else source)
    if not (source / "config.json").is_file():
        raise ValueError(f"save_first_layers needs a local checkpoint folder with a config.json; got {str(source)!r}")
    total = AutoConfig.from_pretrained(source).num_hidden_layers
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be between 1 and the model's {total} layers, got {num_layers}")

    def fill(folder: Path) -> None:
        shutil.copytree(source, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_WEIGHT_FILES))
        with quiet_transformers():  # the layers left out would be listed in a load report
            AutoModel.from_pretrained(source, num_hidden_layers=num_layers).save_pretrained(folder)

    atomic_write_dir(directory, fill)
    return Path(directory)
