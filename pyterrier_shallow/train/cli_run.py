"""Runs ``pyterrier-shallow train``: builds the training data from local collections and runs the loop."""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .cli_args import DataSpec
from .data import MixedSource, PairsSource, RankingSource, TrainingSource, corpus_iter, docs_from_corpus
from .distillation import DistillationSource
from .loop import TrainConfig, train
from .losses import make_loss
from .model_init import init_cross_encoder, resolve_checkpoint
from .negatives import NegativePool, positives_by_query
from .pseudo_queries import pseudo_query_source
from .validation import RerankValidation


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


class Collections:
    """Loads each collection, corpus and BM25 retriever once."""

    def __init__(self, args: argparse.Namespace):
        from .._cache import cache_dir

        self.root = args.data_root
        self.index_dir = Path(args.index_dir) if args.index_dir else cache_dir() / "train"
        self.verbose = not args.quiet
        self._datasets, self._docs, self._retrievers = {}, {}, {}

    def dataset(self, name: str):
        """The collection ``name`` (loaded once)."""
        if name not in self._datasets:
            from .. import datasets

            self._datasets[name] = datasets.get(name, root=self.root)
        return self._datasets[name]

    def docs(self, spec: DataSpec) -> dict[str, str]:
        """The documents of ``spec``'s collection and split, by docno."""
        if spec.label not in self._docs:
            self._docs[spec.label] = docs_from_corpus(corpus_iter(self.dataset(spec.name), spec.split))
        return self._docs[spec.label]

    def bm25(self, spec: DataSpec, depth: int):
        """A BM25 retriever of ``depth`` results over ``spec``'s corpus (indexed once)."""
        from ..bm25 import bm25

        key = (spec.label, depth)
        if key not in self._retrievers:
            folder = self.index_dir / "bm25" / re.sub(r"[^\w.-]+", "_", spec.label)
            documents = _with_text(corpus_iter(self.dataset(spec.name), spec.split))
            self._retrievers[key] = bm25(documents, folder, num_results=depth, verbose=self.verbose)
        return self._retrievers[key]

    def topics_qrels(self, spec: DataSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The topics and qrels of ``spec``'s split."""
        dataset = self.dataset(spec.name)
        return dataset.get_topics(spec.split), dataset.get_qrels(spec.split)


def _with_text(documents):
    """Skips documents with no text in any field (they cannot be indexed, and ``docs`` drops them too)."""
    return (doc for doc in documents if any(str(doc.get(field) or "").strip() for field in ("title", "text")))


def held_out_validation(
    args, collections: Collections, first_stage=None
) -> tuple[RerankValidation | None, str | None, set[str]]:
    """The ``--validate`` set: the validation, its label and the qids it holds out of training.

    Args:
        args: The parsed command line (``validate``, ``val_queries``, ``val_depth``, ``seed``).
        collections: Where the collections come from.
        first_stage: ``(spec, depth) -> retriever`` whose candidates are reranked (``None``: BM25).
    """
    if args.validate is None:
        return None, None, set()
    spec = args.validate
    topics, qrels = collections.topics_qrels(spec)
    judged = topics[topics["qid"].isin(set(positives_by_query(qrels)))]
    if len(judged) == 0:
        raise ValueError(f"{spec.label} has no judged queries to validate on")
    rng = np.random.default_rng(args.seed)
    chosen = judged.iloc[np.sort(rng.choice(len(judged), size=min(args.val_queries, len(judged)), replace=False))]
    retriever = (first_stage or collections.bm25)(spec, args.val_depth)
    validation = RerankValidation.from_first_stage(
        retriever, chosen, qrels, collections.docs(spec), depth=args.val_depth,
        name=spec.label if first_stage is None else f"{spec.label} (dense candidates)",
    )
    return validation, spec.label, set(chosen["qid"])


def training_source(spec: DataSpec, args, collections: Collections, held_out: set[str]) -> TrainingSource:
    """The training source one ``--data`` value describes, without the ``held_out`` queries."""
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


def distillation_source(spec: DataSpec, args, collections: Collections, held_out: set[str], teacher):
    """The groups a ``--distill`` value describes: BM25 candidates of its queries, scored by ``teacher``."""
    if spec.kind in ("pseudo-title", "pseudo-sentence"):
        topics, first_stage, docs, _ = pseudo_distillation_input(
            spec, collections, max_queries=args.max_pseudo_queries, seed=args.seed, depth=args.distill_depth)
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


def pseudo_distillation_input(spec: DataSpec, collections: Collections, *, max_queries: int | None, seed: int,
                              depth: int):
    """Pseudo-queries of ``spec``'s corpus, BM25 over the documents' bodies, the bodies, and that index's folder name.

    Args:
        spec: ``pseudo-title:`` or ``pseudo-sentence:`` data.
        collections: Where the corpus and the index folder come from.
        max_queries: Pseudo-queries drawn at most.
        seed: Seeds the draw.
        depth: BM25 results a pseudo-query.
    """
    from .pseudo_queries import bodies_retriever, pseudo_queries

    mode = "title" if spec.kind == "pseudo-title" else "first_sentence"
    topics, _, docs = pseudo_queries(corpus_iter(collections.dataset(spec.name), spec.split), mode=mode,
                                     max_queries=max_queries, seed=seed)
    retriever, folder = bodies_retriever(docs, collections.index_dir / "pseudo", depth=depth,
                                         verbose=collections.verbose)
    return topics, retriever, docs, folder


def make_teacher(args: argparse.Namespace, *, first_stage_column: str = "score"):
    """The ``--teacher`` of ``args``: the hybrid of BM25 and all-MiniLM-L6-v2, or a cross-encoder.

    ``first_stage_column`` holds the BM25 score the hybrid teacher mixes in.
    """
    if args.teacher == "hybrid":
        from ..dense import BiEncoder
        from .teacher import HybridTeacher

        dense = BiEncoder(query_length=args.query_length, doc_length=args.teacher_doc_length or args.doc_length,
                          device=args.device, warn_truncation=False)
        return HybridTeacher(dense, dense_weight=args.teacher_weight, first_stage_column=first_stage_column,
                             verbose=not args.quiet)
    from ..cross_encoder import CrossEncoder

    return CrossEncoder(args.teacher, query_length=args.query_length,
                        doc_length=args.teacher_doc_length or args.doc_length,
                        device=args.device, warn_truncation=False, verbose=not args.quiet)


def run_training(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Builds the data, validation and model that ``args`` describe and trains; returns 0."""
    if args.distill and args.teacher is None:
        raise ValueError("--distill needs --teacher")
    if not args.data and not args.distill:
        raise ValueError("give some training data: --data, or --distill with --teacher")
    weights = source_weights([*args.data, *args.distill])
    collections = Collections(args)
    validation, validation_label, held_out = held_out_validation(args, collections)
    sources = [training_source(spec, args, collections, held_out if spec.label == validation_label else set())
               for spec in args.data]
    if args.distill:
        teacher = make_teacher(args)
        for spec in args.distill:
            label_held_out = held_out if spec.label == validation_label else set()
            sources.append(distillation_source(spec, args, collections, label_held_out, teacher))
    source = combine_sources(sources, weights)

    output = Path(args.out)
    init_dir = output / "_training" / "init"
    if not (output / "_training" / "last").exists():
        if args.init.startswith("gated:"):
            from ..gated import init_gated_cross_encoder

            bi_encoder = args.init[len("gated:"):]
            init_gated_cross_encoder(None if bi_encoder == "minilm" else bi_encoder, init_dir,
                                     num_layers=args.layers or None, score_scale=args.score_scale,
                                     max_length=_pair_length("minilm", args.query_length, args.doc_length),
                                     match_texts=_training_texts(args, collections) if args.match_term else None,
                                     query_gates=args.query_gates)
        elif args.match_term or args.query_gates:
            flag = "--match-term" if args.match_term else "--query-gates"
            raise ValueError(f"{flag} needs a gated model (--init gated:...)")
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
        freeze_embeddings=args.freeze_embeddings, window=args.window, anchor=args.anchor,
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


def _training_texts(args: argparse.Namespace, collections: Collections) -> list[str]:
    """The documents of every training collection with a corpus (each collection and split once)."""
    texts, seen = [], set()
    for spec in [*args.data, *args.distill]:
        if spec.label in seen:
            continue
        seen.add(spec.label)
        try:
            texts.extend(collections.docs(spec).values())
        except NotImplementedError:  # a collection with no corpus (its texts come with its topics)
            continue
    if not texts:
        raise ValueError("--match-term needs a training collection with documents")
    return texts


def _pair_length(checkpoint: str, query_length: int, doc_length: int) -> int:
    """The longest pair in tokens: both lengths plus the tokenizer's special tokens, capped at 512."""
    from transformers import AutoTokenizer

    from .._hf import load_pretrained

    tokenizer = load_pretrained(AutoTokenizer, resolve_checkpoint(checkpoint))
    specials = len(tokenizer("a", "b", padding=False, truncation=False)["input_ids"]) - 2
    return min(512, query_length + doc_length + specials)
