"""Shallow bi-encoders distilled from deep ones: a student's first layers learn the teacher's sentence embeddings.

The first layers of a sentence-embedding model, mean-pooled, are a weak bi-encoder (their states were never trained
to be pooled). :func:`distill_bi_encoder` trains them to reproduce the whole model's normalised embeddings (mean
squared error) over texts of the training collections; the teacher's embeddings are computed once and cached.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyterrier as pt
import torch

from .._hf import quiet_transformers
from .._io import atomic_write_bytes, atomic_write_dir, atomic_write_json, digest
from ..dense import BiEncoder, save_first_layers

CARD_FILE = "distillation_card.json"


@dataclass
class BiDistillConfig:
    """Hyper-parameters of a bi-encoder distillation run (recorded in its card).

    Attributes:
        num_layers: Layers of the student (its first layers are the teacher's).
        epochs: Passes over the texts.
        batch_size: Texts per optimizer step.
        lr: Peak learning rate (AdamW, linear warm-up over ``warmup`` of the steps, then linear decay).
        warmup: The share of steps spent warming up.
        max_length: Tokens kept of each text, special tokens included, for student and teacher alike.
        val_share: The share of texts held out to measure the student's cosine to the teacher.
        seed: Seeds the split and the order of batches.
    """

    num_layers: int = 2
    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-4
    warmup: float = 0.05
    max_length: int = 128
    val_share: float = 0.02
    seed: int = 0

    def __post_init__(self):
        for name in ("num_layers", "epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.val_share < 1 or not 0 <= self.warmup < 1:
            raise ValueError("val_share and warmup must lie in [0, 1)")


def distillation_texts(names: Iterable[str], *, root: str | os.PathLike | None = None) -> list[str]:
    """Collects distinct texts to distil on: documents (and titles), plus the training topics of each collection.

    Args:
        names: Collections with their split, as ``nfcorpus:dev``, ``cranfield``, ``wikiqa:train``.
        root: The folder of collections (see :func:`pyterrier_shallow.datasets.data_root`).
    """
    from .. import datasets

    texts: dict[str, None] = {}
    for spec in names:
        name, _, split = spec.partition(":")
        if name.lower() == "vaswani":
            raise ValueError("vaswani is held out for evaluation; it must not be distilled on")
        dataset = datasets.get(name, root)
        split = split or None
        corpus = dataset.get_corpus_iter(split=split) if split else dataset.get_corpus_iter()
        for doc in corpus:
            for field in ("title", "text"):
                value = doc.get(field)
                if isinstance(value, str) and value.strip():
                    texts[value.strip()] = None
        topics = dataset.get_topics(split) if split else dataset.get_topics()
        for query in topics["query"].tolist():
            if isinstance(query, str) and query.strip():
                texts[query.strip()] = None
    return list(texts)


def _teacher_vectors(texts: Sequence[str], teacher: str | None, max_length: int, cache_dir: Path | None,
                     verbose: bool) -> np.ndarray:
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"teacher-{digest(list(texts), str(teacher), max_length)}.npy"
        if cache.is_file():
            return np.load(cache)
    model = BiEncoder(teacher, max_length=max_length, warn_truncation=False, device="cpu", verbose=verbose)
    vectors = model.encode_docs(list(texts), verbose=verbose)
    if cache is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, vectors)
        atomic_write_bytes(cache, buffer.getvalue())
    return vectors


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (sorted within pools of 50 batches), to cut padding."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def distill_bi_encoder(
    output_dir: str | os.PathLike,
    texts: Sequence[str],
    *,
    config: BiDistillConfig | None = None,
    teacher: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    data: Sequence[str] = (),
    student: str | os.PathLike | None = None,
    verbose: bool = True,
) -> dict:
    """Distils the first ``config.num_layers`` layers of ``teacher`` into a bi-encoder checkpoint ``BiEncoder`` loads.

    Args:
        output_dir: Where the student goes (written atomically, with ``distillation_card.json``).
        texts: The texts to distil on.
        config: Hyper-parameters (default: :class:`BiDistillConfig` ()).
        teacher: A local sentence-transformers folder (default: the bundled all-MiniLM-L6-v2).
        cache_dir: Where the teacher's embeddings are cached (``None``: not cached).
        data: The names of the collections the texts came from, for the card.
        student: Continue from this student folder (an earlier run's output) instead of the teacher's first layers.
        verbose: Show progress bars.

    Returns:
        The card: configuration, held-out cosine to the teacher before and after, losses, time.
    """
    config = config or BiDistillConfig()
    texts = list(texts)
    if len(texts) < 2:
        raise ValueError(f"distillation needs at least 2 texts, got {len(texts)}")
    started = time.monotonic()
    target = torch.from_numpy(_teacher_vectors(texts, teacher, config.max_length,
                                               Path(cache_dir) if cache_dir else None, verbose))
    rng = np.random.default_rng(config.seed)
    held = rng.permutation(len(texts))
    n_val = max(1, int(len(texts) * config.val_share)) if config.val_share else 0
    val_ids, train_ids = held[:n_val], held[n_val:]

    output_dir = Path(output_dir)
    staging = output_dir.with_name(f".{output_dir.name}.student")
    save_first_layers(staging, config.num_layers, student or teacher)
    student = BiEncoder(staging, max_length=config.max_length, warn_truncation=False, device="cpu")
    net = student.model
    net.get_input_embeddings().weight.requires_grad_(False)  # shared with the teacher; not worth its optimizer state

    def cosine(ids: np.ndarray) -> float:
        net.eval()
        with torch.no_grad():
            vectors = torch.from_numpy(student.encode_docs([texts[i] for i in ids], verbose=False))
        net.train()
        return float((vectors * target[ids]).sum(1).mean())

    before = cosine(val_ids) if n_val else None
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    lengths = np.array([len(text) for text in texts])
    per_epoch = -(-len(train_ids) // config.batch_size)
    total = per_epoch * config.epochs
    warmup = max(1, int(total * config.warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    curve, losses = [], []
    net.train()
    bar = pt.tqdm(total=total, desc="distilling", unit="step", disable=not verbose)
    for epoch in range(config.epochs):
        for batch in _batches(lengths[train_ids], config.batch_size, rng):
            ids = train_ids[batch]
            hidden, mask = student.token_states([texts[i] for i in ids], "doc")
            vectors = torch.nn.functional.normalize(student.pooled(hidden, mask), dim=-1)
            loss = ((vectors - target[ids]) ** 2).sum(1).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        curve.append({"epoch": epoch + 1, "loss": float(np.mean(losses[-per_epoch:])),
                      "val_cosine": cosine(val_ids) if n_val else None})
        _publish(output_dir, staging, net, _card(config, teacher, data, texts, n_val, before, curve, started, student))
    bar.close()
    net.eval()
    shutil.rmtree(staging, ignore_errors=True)
    return json.loads((output_dir / CARD_FILE).read_text())


def _card(config, teacher, data, texts, n_val, before, curve, started, student) -> dict:
    return {
        "kind": "bi-encoder distillation",
        "teacher": str(teacher or "sentence-transformers/all-MiniLM-L6-v2"),
        "config": asdict(config),
        "data": list(data),
        "texts": len(texts),
        "held_out_texts": int(n_val),
        "val_cosine_before": before,
        "curve": curve,
        "elapsed_s": round(time.monotonic() - started, 1),
        "continued_from": None if student is None else str(student),
        "command": shlex.join(sys.argv),
    }


def _publish(output_dir: Path, staging: Path, net, card: dict) -> None:
    """Writes the student as it is now (after an epoch) into ``output_dir``, atomically."""

    def fill(folder: Path) -> None:
        for file in staging.iterdir():
            if file.is_file() and file.suffix not in (".safetensors", ".bin"):
                atomic_write_bytes(folder / file.name, file.read_bytes())
        with quiet_transformers():
            net.save_pretrained(folder)
        atomic_write_json(folder / CARD_FILE, card)

    atomic_write_dir(output_dir, fill)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyterrier_shallow.train.bi_distill OUT [--layers N] [--data NAME[:SPLIT]]...``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--data", action="append", default=None,
                        help="collection[:split], repeatable (default: nfcorpus:dev cranfield cisi wikiqa:train)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-texts", type=int, default=None, help="distil on a seeded sample of this many texts")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--student", default=None, help="continue from this student folder (an earlier run's output)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or ["nfcorpus:dev", "cranfield", "cisi", "wikiqa:train"]
    texts = distillation_texts(data)
    if args.max_texts and len(texts) > args.max_texts:
        keep = np.sort(np.random.default_rng(0).choice(len(texts), args.max_texts, replace=False))
        texts = [texts[i] for i in keep]
    config = BiDistillConfig(num_layers=args.layers, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             max_length=args.max_length)
    card = distill_bi_encoder(args.out, texts, config=config, cache_dir=args.cache_dir, data=data,
                              student=args.student, verbose=not args.quiet)
    print(json.dumps({key: card[key] for key in ("texts", "val_cosine_before", "curve", "elapsed_s")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
