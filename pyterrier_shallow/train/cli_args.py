"""The ``pyterrier-shallow train`` command: builds the training data from local collections and runs the loop."""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import MixedSource, PairsSource, RankingSource, TrainingSource, corpus_iter, docs_from_corpus
from .distillation import DistillationSource
from .loop import TrainConfig, train
from .losses import LOSSES, make_loss
from .model_init import init_cross_encoder, resolve_checkpoint
from .negatives import NegativePool, positives_by_query
from .pseudo_queries import pseudo_query_source
from .validation import RerankValidation

KINDS = ("ranking", "pairs", "pseudo-title", "pseudo-sentence")
_PAIRS_COLLECTIONS = {"wikiqa"}

_DATA_HELP = (
    "training data, repeatable: [KIND:]NAME[:SPLIT][@WEIGHT]. KIND is ranking (topics + qrels, BM25 negatives; the "
    "default), pairs (labelled candidates; the default for wikiqa), pseudo-title or pseudo-sentence (a document's "
    "title or first sentence as a query for its body). Examples: nfcorpus:dev, wikiqa:train@0.5, "
    "pseudo-title:cranfield. Without weights, sources are drawn in proportion to their numbers of queries."
)


@dataclass(frozen=True)
class DataSpec:
    """One ``--data`` value: the kind of source, the collection, its split and its mixing weight."""

    kind: str
    name: str
    split: str | None
    weight: float | None

    @property
    def label(self) -> str:
        """``name:split`` (or just the name)."""
        return self.name if self.split is None else f"{self.name}:{self.split}"


def parse_data_spec(text: str) -> DataSpec:
    """Parses ``[KIND:]NAME[:SPLIT][@WEIGHT]`` (``beir:<folder>`` counts as one name)."""
    body, _, weight_text = text.partition("@")
    weight = None
    if weight_text:
        try:
            weight = float(weight_text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"bad weight in {text!r}: {weight_text!r}") from err
        if not weight >= 0:
            raise argparse.ArgumentTypeError(f"the weight in {text!r} must be non-negative")
    parts = body.split(":")
    kind = parts.pop(0) if parts[0] in KINDS else None
    if not parts or not parts[0]:
        raise argparse.ArgumentTypeError(f"no collection named in {text!r}")
    name = parts.pop(0)
    if name == "beir":
        if not parts:
            raise argparse.ArgumentTypeError(f"beir needs a folder: beir:<folder> in {text!r}")
        name = f"beir:{parts.pop(0)}"
    if len(parts) > 1:
        raise argparse.ArgumentTypeError(f"too many ':' parts in {text!r}")
    split = parts[0] if parts else None
    if kind is None:
        kind = "pairs" if name in _PAIRS_COLLECTIONS else "ranking"
    return DataSpec(kind, name, split, weight)


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ``train`` options to ``parser`` and returns it."""
    io = parser.add_argument_group("model and output")
    io.add_argument("--out", required=True, help="the trained model's directory (resumed if interrupted)")
    io.add_argument("--init", default="minilm",
                    help="start from: a hub id, a folder, minilm (default), or gated:BI_ENCODER (a cross-encoder that "
                         "begins as the bi-encoder folder BI_ENCODER, or gated:minilm, with closed cross-attention "
                         "gates)")
    io.add_argument("--score-scale", type=float, default=20.0,
                    help="gated models: the initial scale of the cosine (default: 20)")
    io.add_argument("--layers", type=int, default=2, help="keep the first N layers (0: all; default: 2)")
    io.add_argument("--cls-init", choices=["auto", "keep", "contextual"], default="auto",
                    help="contextual: reset the first position so that [CLS] depends on the input (a sentence-"
                         "embedding model's [CLS] is an attention sink); auto (default): contextual for minilm")
    io.add_argument("--keep-checkpoints", action="store_true", help="keep OUT/_training after success")

    data = parser.add_argument_group("data")
    data.add_argument("--data", action="append", type=parse_data_spec, default=[], help=_DATA_HELP)
    data.add_argument("--data-root", default=None, help="the folder of local collections (default: shared/data)")
    data.add_argument("--index-dir", default=None, help="BM25 indexes and caches (default: a cache folder)")
    data.add_argument("--pool-depth", type=int, default=1000, help="BM25 candidates mined per query (default: 1000)")
    data.add_argument("--sample-depth", type=int, default=None, help="sample negatives from the top N of the pool")
    data.add_argument("--max-pseudo-queries", type=int, default=5000, help="pseudo-queries per collection")

    val = parser.add_argument_group("validation")
    val.add_argument("--validate", type=parse_data_spec, default=None,
                     help="NAME[:SPLIT] to validate on; its queries are held out of any training source of the "
                          "same collection and split")
    val.add_argument("--val-queries", type=int, default=50, help="held-out queries (default: 50)")
    val.add_argument("--val-depth", type=int, default=20, help="BM25 candidates reranked (default: 20)")
    val.add_argument("--patience", type=int, default=None, help="stop after N validations without gain")

    distil = parser.add_argument_group("distillation")
    distil.add_argument("--teacher", default=None,
                        help="whose scores to distil: a cross-encoder (folder or hub id), or hybrid (BM25 mixed with "
                             "all-MiniLM-L6-v2's cosine, per-query z-scores)")
    distil.add_argument("--teacher-weight", type=float, default=2.0,
                        help="hybrid teacher: the weight of the dense side; BM25 weighs 1 (default: 2)")
    distil.add_argument("--teacher-doc-length", type=int, default=None,
                        help="tokens of a text the teacher reads (default: --doc-length)")
    distil.add_argument("--distill", action="append", type=parse_data_spec, default=[],
                        help="[KIND:]NAME[:SPLIT][@WEIGHT] whose BM25 candidates the teacher scores (repeatable): a "
                             "collection's topics, or pseudo-title: / pseudo-sentence: queries made from its documents")
    distil.add_argument("--distill-depth", type=int, default=50, help="candidates scored per query (default: 50)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--loss", choices=sorted(LOSSES), default="gbce", help="default: gbce")
    opt.add_argument("--t", type=float, default=0.75, help="gBCE calibration t in [0, 1] (default: 0.75)")
    opt.add_argument("--temperature", type=float, default=1.0, help="soft-label temperature (default: 1)")
    opt.add_argument("--negatives", type=int, default=15, help="k negatives per query (default: 15)")
    opt.add_argument("--queries-per-step", type=int, default=8, help="default: 8")
    opt.add_argument("--steps", type=int, default=1000, help="default: 1000")
    opt.add_argument("--lr", type=float, default=3e-5, help="default: 3e-5")
    opt.add_argument("--head-lr", type=float, default=None,
                     help="learning rate of the head, or of a gated model's gates (default: --lr)")
    opt.add_argument("--scale-lr", type=float, default=None,
                     help="learning rate of a gated model's score scale (default: --head-lr)")
    opt.add_argument("--warmup", type=int, default=100, help="warm-up steps (default: 100)")
    opt.add_argument("--weight-decay", type=float, default=0.01, help="default: 0.01")
    opt.add_argument("--micro-batch", type=int, default=64, help="pairs per forward pass (default: 64)")
    opt.add_argument("--query-length", type=int, default=32, help="default: 32 tokens")
    opt.add_argument("--doc-length", type=int, default=224, help="default: 224 tokens")
    opt.add_argument("--eval-every", type=int, default=100, help="validate and checkpoint every N steps")
    opt.add_argument("--freeze-embeddings", action="store_true", help="keep the token embeddings fixed")
    opt.add_argument("--window", type=int, default=None,
                     help="train under the sparse attention pattern with this document window (default: dense)")
    opt.add_argument("--seed", type=int, default=0, help="default: 0")

    run = parser.add_argument_group("hardware")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when present)")
    run.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``train`` subcommand to an ``argparse`` subparsers object; it runs :func:`run_train`."""
    parser = subparsers.add_parser(
        "train",
        help="train a (shallow) cross-encoder on local collections",
        description="Trains a cross-encoder (by default the first 2 layers of all-MiniLM-L6-v2 with a fresh head) "
        "with many BM25 negatives per query, validating on held-out queries; interrupted runs resume.",
    )
    add_train_arguments(parser)
    parser.set_defaults(run=run_train)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Returns a stand-alone parser of the ``train`` options."""
    return add_train_arguments(argparse.ArgumentParser(prog="pyterrier-shallow train"))


def main_train(argv: Sequence[str] | None = None) -> int:
    """Runs ``pyterrier-shallow train`` with ``argv`` (default: ``sys.argv[1:]``) and returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_train(build_parser().parse_args(argv), argv=argv)


def run_train(args: argparse.Namespace, *, argv: Sequence[str] | None = None) -> int:
    """Builds the data, validation and model that ``args`` describe and trains; returns 0."""
    with torch_threads(args.threads):
        return _run(args, argv if argv is not None else sys.argv[2:])


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Runs the block with ``threads`` CPU threads for torch (``None``: unchanged), restoring them afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def source_weights(specs: Sequence[DataSpec]) -> list[float] | None:
    """The specs' ``@WEIGHT`` s, or ``None`` when none has one; raises when only some have one."""
    weights = [spec.weight for spec in specs]
    if all(weight is None for weight in weights):
        return None
    if any(weight is None for weight in weights):
        raise ValueError("give a @WEIGHT to every data source, or to none")
    return weights


def combine_sources(sources: list[TrainingSource], weights: list[float] | None) -> TrainingSource:
    """One source as it is, several mixed by ``weights`` (``None``: in proportion to their queries)."""
    return sources[0] if len(sources) == 1 else MixedSource(sources, weights)


class _Collections:
    """Loads each collection, corpus and BM25 retriever once."""

    def __init__(self, args: argparse.Namespace):
        from .._cache import cache_dir

        self.root = args.data_root
        self.index_dir = Path(args.index_dir) if args.index_dir else cache_dir() / "train"
        self.verbose = not args.quiet
        self._datasets, self._docs, self._retrievers = {}, {}, {}

    def dataset(self, name: str):
        if name not in self._datasets:
            from .. import datasets

            self._datasets[name] = datasets.get(name, root=self.root)
        return self._datasets[name]

    def docs(self, spec: DataSpec) -> dict[str, str]:
        if spec.label not in self._docs:
            self._docs[spec.label] = docs_from_corpus(corpus_iter(self.dataset(spec.name), spec.split))
        return self._docs[spec.label]

    def bm25(self, spec: DataSpec, depth: int):
        from ..bm25 import bm25

        key = (spec.label, depth)
        if key not in self._retrievers:
            folder = self.index_dir / "bm25" / re.sub(r"[^\w.-]+", "_", spec.label)
            documents = _with_text(corpus_iter(self.dataset(spec.name), spec.split))
            self._retrievers[key] = bm25(documents, folder, num_results=depth, verbose=self.verbose)
        return self._retrievers[key]

    def topics_qrels(self, spec: DataSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
        dataset = self.dataset(spec.name)
        return dataset.get_topics(spec.split), dataset.get_qrels(spec.split)


def _with_text(documents):
    """Skips documents with no text in any field (they cannot be indexed, and ``docs`` drops them too)."""
    return (doc for doc in documents if any(str(doc.get(field) or "").strip() for field in ("title", "text")))


def _validation(args, collections: _Collections) -> tuple[RerankValidation | None, str | None, set[str]]:
    if args.validate is None:
        return None, None, set()
    spec = args.validate
    topics, qrels = collections.topics_qrels(spec)
    judged = topics[topics["qid"].isin(set(positives_by_query(qrels)))]
    if len(judged) == 0:
        raise ValueError(f"{spec.label} has no judged queries to validate on")
    rng = np.random.default_rng(args.seed)
    chosen = judged.iloc[np.sort(rng.choice(len(judged), size=min(args.val_queries, len(judged)), replace=False))]
    validation = RerankValidation.from_first_stage(
        collections.bm25(spec, args.val_depth), chosen, qrels, collections.docs(spec), depth=args.val_depth,
        name=spec.label,
    )
    return validation, spec.label, set(chosen["qid"])


def _source(spec: DataSpec, args, collections: _Collections, held_out: set[str]) -> TrainingSource:
    if spec.kind in ("pseudo-title", "pseudo-sentence"):
        return pseudo_query_source(
            corpus_iter(collections.dataset(spec.name), spec.split), collections.index_dir / "pseudo",
            mode="title" if spec.kind == "pseudo-title" else "first_sentence", depth=min(args.pool_depth, 100),
            sample_depth=args.sample_depth, max_queries=args.max_pseudo_queries, name=f"pseudo:{spec.label}",
            seed=args.seed, verbose=collections.verbose,
        )
    topics, qrels = collections.topics_qrels(spec)
    topics = topics[~topics["qid"].isin(held_out)].reset_index(drop=True)
    docs = collections.docs(spec)
    if spec.kind == "pairs":
        pairs = qrels[qrels["docno"].isin(docs.keys())].merge(topics[["qid", "query"]], on="qid")
        return PairsSource(pairs.assign(text=pairs["docno"].map(docs)), name=spec.label)
    negatives = NegativePool.mine(
        collections.bm25(spec, args.pool_depth), topics, qrels, depth=args.pool_depth, corpus_docnos=list(docs),
        sample_depth=args.sample_depth, cache_dir=collections.index_dir / "negatives", verbose=collections.verbose,
    )
    return RankingSource(topics, qrels, docs, negatives, name=spec.label)


def _distillation_source(spec: DataSpec, args, collections: _Collections, held_out: set[str], teacher):
    if spec.kind in ("pseudo-title", "pseudo-sentence"):
        topics, first_stage, docs = _pseudo_distillation_input(spec, args, collections)
    elif spec.kind == "ranking":
        topics, _ = collections.topics_qrels(spec)
        topics = topics[~topics["qid"].isin(held_out)].reset_index(drop=True)
        first_stage, docs = collections.bm25(spec, args.distill_depth), collections.docs(spec)
    else:
        raise ValueError(f"--distill takes topics or pseudo-queries, not {spec.kind!r} data ({spec.label})")
    return DistillationSource.from_first_stage(
        first_stage, teacher, topics, docs, depth=args.distill_depth,
        cache_dir=collections.index_dir / "teacher",
        name=f"distil:{spec.label}" if spec.kind == "ranking" else f"distil:{spec.kind}:{spec.label}",
        verbose=collections.verbose,
    )


def _pseudo_distillation_input(spec: DataSpec, args, collections: _Collections):
    """Pseudo-queries of a corpus, BM25 over the documents' bodies, and the bodies, for the teacher to score."""
    from .pseudo_queries import bodies_retriever, pseudo_queries

    mode = "title" if spec.kind == "pseudo-title" else "first_sentence"
    topics, _, docs = pseudo_queries(corpus_iter(collections.dataset(spec.name), spec.split), mode=mode,
                                     max_queries=args.max_pseudo_queries, seed=args.seed)
    retriever, _ = bodies_retriever(docs, collections.index_dir / "pseudo", depth=args.distill_depth,
                                    verbose=collections.verbose)
    return topics, retriever, docs


def _teacher(args: argparse.Namespace):
    if args.teacher == "hybrid":
        from ..dense import BiEncoder
        from .teacher import HybridTeacher

        dense = BiEncoder(query_length=args.query_length, doc_length=args.teacher_doc_length or args.doc_length,
                          device=args.device, warn_truncation=False)
        return HybridTeacher(dense, dense_weight=args.teacher_weight, verbose=not args.quiet)
    from ..cross_encoder import CrossEncoder

    return CrossEncoder(args.teacher, query_length=args.query_length,
                        doc_length=args.teacher_doc_length or args.doc_length,
                        device=args.device, warn_truncation=False, verbose=not args.quiet)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.distill and args.teacher is None:
        raise ValueError("--distill needs --teacher")
    if not args.data and not args.distill:
        raise ValueError("give some training data: --data, or --distill with --teacher")
    weights = source_weights([*args.data, *args.distill])
    collections = _Collections(args)
    validation, validation_label, held_out = _validation(args, collections)
    sources = [_source(spec, args, collections, held_out if spec.label == validation_label else set())
               for spec in args.data]
    if args.distill:
        teacher = _teacher(args)
        for spec in args.distill:
            label_held_out = held_out if spec.label == validation_label else set()
            sources.append(_distillation_source(spec, args, collections, label_held_out, teacher))
    source = combine_sources(sources, weights)

    output = Path(args.out)
    init_dir = output / "_training" / "init"
    if not (output / "_training" / "last").exists():
        if args.init.startswith("gated:"):
            from ..gated import init_gated_cross_encoder

            bi_encoder = args.init[len("gated:"):]
            init_gated_cross_encoder(None if bi_encoder == "minilm" else bi_encoder, init_dir,
                                     num_layers=args.layers or None, score_scale=args.score_scale,
                                     max_length=_pair_length("minilm", args.query_length, args.doc_length))
        else:
            contextual = args.cls_init == "contextual" or (args.cls_init == "auto" and args.init == "minilm")
            init_cross_encoder(args.init, init_dir, num_layers=args.layers or None,
                               max_length=_pair_length(args.init, args.query_length, args.doc_length),
                               contextual_cls=contextual, seed=args.seed)
    loss_params = {"gbce": {"t": args.t}, "soft-label": {"temperature": args.temperature}}.get(args.loss, {})
    config = TrainConfig(
        steps=args.steps, queries_per_step=args.queries_per_step, num_negatives=args.negatives, lr=args.lr,
        head_lr=args.head_lr, scale_lr=args.scale_lr, weight_decay=args.weight_decay,
        warmup_steps=min(args.warmup, args.steps),
        micro_batch_size=args.micro_batch, query_length=args.query_length, doc_length=args.doc_length,
        eval_every=args.eval_every, patience=args.patience, seed=args.seed, amp=not args.no_amp,
        freeze_embeddings=args.freeze_embeddings, window=args.window,
    )
    result = train(
        init_dir, source, output, loss=make_loss(args.loss, **loss_params), config=config, validation=validation,
        device=args.device, keep_checkpoints=args.keep_checkpoints,
        command=f"pyterrier-shallow train {shlex.join(argv)}", verbose=not args.quiet,
    )
    print(f"saved {result.output_dir} (step {result.best_step} of {result.steps})")
    if validation is not None:
        for point in result.curve:
            print(f"  step {point['step']:>6}  {validation.metric} {point[validation.metric]:.4f}")
    return 0


def _pair_length(checkpoint: str, query_length: int, doc_length: int) -> int:
    """The longest pair in tokens: both lengths plus the tokenizer's special tokens, capped at 512."""
    from transformers import AutoTokenizer

    from .._hf import load_pretrained

    tokenizer = load_pretrained(AutoTokenizer, resolve_checkpoint(checkpoint))
    specials = len(tokenizer("a", "b", padding=False, truncation=False)["input_ids"]) - 2
    return min(512, query_length + doc_length + specials)
