"""``pyterrier-shallow train-poly``: trains a poly-encoder (codes, query tower or encoder) on local collections."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from pyterrier_shallow.train.cli_args import _DATA_HELP, add_distillation_arguments, parse_data_spec

TUNE_MODES = ("codes", "query", "both")
"""What training fine-tunes besides the codes."""
POLY_LOSSES = ("softmax-ce", "soft-label")
"""The losses a poly-encoder trains with."""
KEEP_MODES = ("best", "last")
"""Which step's model training keeps: the best validated, or the last."""


def add_train_poly_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ``train-poly`` options to ``parser`` and returns it."""
    model = parser.add_argument_group("model and output")
    model.add_argument("--out", required=True,
                       help="the poly-encoder's directory (replaced when training ends); with several --codes, "
                            "one sub-directory m<M> each")
    model.add_argument("--encoder", default=None,
                       help="the bi-encoder: a hub id or folder (default: all-MiniLM-L6-v2, offline)")
    model.add_argument("--codes", type=int, nargs="+", default=[16],
                       help="m, the number of codes (default: 16; the paper: 16, 64, 360); several train one "
                            "poly-encoder each (with --tune query, each its own query tower), sharing the frozen "
                            "encoder's outputs")
    model.add_argument("--scaled", action="store_true", help="divide attention logits by sqrt(dimension)")
    model.add_argument("--init-std", type=float, default=0.05, help="spread of the initial codes (default: 0.05)")
    model.add_argument("--query-length", type=int, default=64, help="default: 64 tokens")
    model.add_argument("--doc-length", type=int, default=256, help="default: 256 tokens")

    data = parser.add_argument_group("data")
    data.add_argument("--data", action="append", type=parse_data_spec, default=[], help=_DATA_HELP)
    data.add_argument("--data-root", default=None, help="the folder of local collections (default: shared/data)")
    data.add_argument("--index-dir", default=None, help="BM25 indexes and caches (default: a cache folder)")
    data.add_argument("--pool-depth", type=int, default=100, help="BM25 candidates mined per query (default: 100)")
    data.add_argument("--sample-depth", type=int, default=None, help="sample negatives from the top N of the pool")
    data.add_argument("--max-pseudo-queries", type=int, default=5000, help="pseudo-queries per collection")

    distil = add_distillation_arguments(parser)
    distil.add_argument("--candidates", choices=["bm25", "dense"], default="bm25",
                        help="whose candidates the teacher scores and validation reranks: BM25's, or dense "
                             "retrieval's with the poly-encoder's own document vectors (indexed once per collection; "
                             "the hybrid teacher then mixes in BM25's score of each, from its top 1000)")

    val = parser.add_argument_group("validation")
    val.add_argument("--validate", type=parse_data_spec, default=None,
                     help="NAME[:SPLIT] to validate on; its queries are held out of training on the same split")
    val.add_argument("--val-queries", type=int, default=50, help="held-out queries (default: 50)")
    val.add_argument("--val-depth", type=int, default=20, help="BM25 candidates reranked (default: 20)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--negatives", type=int, default=7, help="k hard negatives per query (default: 7)")
    opt.add_argument("--no-in-batch", action="store_true", help="no in-batch negatives")
    opt.add_argument("--tune", choices=TUNE_MODES, default="codes",
                     help="what learns besides the codes: codes (nothing; the default), query (a query tower of its "
                          "own, saved as an fp16 delta; documents keep the encoder's vectors and its indexes) or "
                          "both (the encoder of both sides, saved in OUT/encoder; re-index documents with it)")
    opt.add_argument("--query-layers", type=int, default=None,
                     help="with --tune query: fine-tune only the top N layers of the query tower (default: all)")
    opt.add_argument("--encoder-lr", type=float, default=2e-5,
                     help="the learning rate of the encoder or query tower (default: 2e-5)")
    opt.add_argument("--loss", choices=POLY_LOSSES, default=None,
                     help="softmax-ce (labels) or soft-label (the teacher's scores; default with --distill)")
    opt.add_argument("--temperature", type=float, default=1.0, help="soft-label temperature (default: 1)")
    opt.add_argument("--loss-scale", type=float, default=1.0,
                     help="multiplies the poly-encoder's scores inside the loss (default: 1)")
    opt.add_argument("--queries-per-step", type=int, default=16, help="default: 16")
    opt.add_argument("--steps", type=int, default=500, help="default: 500")
    opt.add_argument("--lr", type=float, default=5e-3, help="default: 5e-3")
    opt.add_argument("--warmup", type=int, default=50, help="warm-up steps (default: 50)")
    opt.add_argument("--eval-every", type=int, default=100, help="validate every N steps (default: 100)")
    opt.add_argument("--keep", choices=KEEP_MODES, default="best",
                     help="with --validate, keep the best validated step (default) or the last one")
    opt.add_argument("--seed", type=int, default=0, help="default: 0")
    opt.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    opt.add_argument("--device", default=None, help="where the encoder runs (default: CUDA when present)")
    opt.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def add_train_poly_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``train-poly`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "train-poly",
        help="train a poly-encoder: its codes, a query tower of its own, or its encoder",
        description="Trains the m codes of a poly-encoder (and, with --tune, a query tower or the encoder) from labels "
        "(softmax cross-entropy with BM25 and in-batch negatives) or a teacher's scores (--distill, listwise), keeping "
        "the model that validates best, and saves the poly-encoder directory.",
    )
    add_train_poly_arguments(parser)
    parser.set_defaults(run=run_train_poly)
    return parser


def main_train_poly(argv: Sequence[str] | None = None) -> int:
    """Runs ``pyterrier-shallow train-poly`` with ``argv`` (default: ``sys.argv[1:]``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_train_poly_arguments(argparse.ArgumentParser(prog="pyterrier-shallow train-poly"))
    return run_train_poly(parser.parse_args(argv), argv=argv)


def run_train_poly(args: argparse.Namespace, *, argv: Sequence[str] | None = None) -> int:
    """Trains the codes ``args`` describe and saves the poly-encoder; returns 0."""
    from pyterrier_shallow.dense import BiEncoder
    from pyterrier_shallow.poly.poly_encoder import PolyEncoder
    from pyterrier_shallow.poly.train import FrozenEncodings, PolyTrainConfig, train_codes
    from pyterrier_shallow.train.cli_run import (
        Collections,
        combine_sources,
        distillation_source,
        held_out_validation,
        make_teacher,
        source_weights,
        torch_threads,
        training_source,
    )

    if not args.data and not args.distill:
        raise ValueError("give some training data: --data, or --distill with --teacher")
    if args.distill and args.teacher is None:
        raise ValueError("--distill needs --teacher")
    loss = args.loss or ("soft-label" if args.distill else "softmax-ce")
    if loss == "soft-label" and args.data:
        raise ValueError("soft-label distillation learns from --distill sources only; drop --data or use softmax-ce")
    if args.tune == "both" and len(args.codes) > 1:
        raise ValueError("--tune both trains one poly-encoder at a time: give one --codes value")
    weights = source_weights([*args.data, *args.distill])
    with torch_threads(args.threads):
        collections = Collections(args)
        encoder = BiEncoder(args.encoder, query_length=args.query_length, doc_length=args.doc_length,
                            device=args.device, warn_truncation=False)
        pools = None
        if args.candidates == "dense":
            from pyterrier_shallow.train.dense_pools import BM25_COLUMN, DensePools

            if args.data:
                raise ValueError("--candidates dense applies to --distill sources; drop --data")
            pools = DensePools(collections, encoder, collections.index_dir)
        validation, validation_label, held_out = held_out_validation(
            args, collections, None if pools is None else pools.retriever)
        sources = [training_source(spec, args, collections, held_out if spec.label == validation_label else set())
                   for spec in args.data]
        if args.distill:
            if pools is None:
                teacher = make_teacher(args)
                sources += [distillation_source(spec, args, collections,
                                                held_out if spec.label == validation_label else set(), teacher)
                            for spec in args.distill]
            else:
                teacher = make_teacher(args, first_stage_column=BM25_COLUMN)
                sources += [pools.source(spec, teacher, depth=args.distill_depth,
                                         held_out=held_out if spec.label == validation_label else set(),
                                         max_pseudo_queries=args.max_pseudo_queries, seed=args.seed)
                            for spec in args.distill]
        source = combine_sources(sources, weights)
        config = PolyTrainConfig(
            steps=args.steps, queries_per_step=args.queries_per_step, num_negatives=args.negatives,
            in_batch_negatives=not args.no_in_batch, lr=args.lr, warmup_steps=min(args.warmup, args.steps),
            eval_every=args.eval_every, seed=args.seed, tune=args.tune, query_layers=args.query_layers,
            encoder_lr=args.encoder_lr, loss=loss, temperature=args.temperature, loss_scale=args.loss_scale,
            keep=args.keep,
        )
        command = f"pyterrier-shallow train-poly {shlex.join(argv if argv is not None else sys.argv[2:])}"
        encodings, cards = None, {}
        for num_codes in args.codes:
            poly = PolyEncoder.fresh(encoder, num_codes=num_codes, scaled=args.scaled, init_std=args.init_std,
                                     seed=args.seed)
            if encodings is None:
                encodings = FrozenEncodings(poly)
                if pools is not None and args.tune != "both":
                    encodings.add_vectors(*pools.stored_vectors())
            card = train_codes(poly, source, config=config, validation=validation, encodings=encodings,
                               verbose=not args.quiet)
            output = Path(args.out) if len(args.codes) == 1 else Path(args.out) / f"m{num_codes}"
            poly.save(output, card={**card, "command": command}, save_encoder=args.tune == "both")
            cards[output] = card
    for output, card in cards.items():
        kept = "best validated" if args.keep == "best" and validation is not None else "last"
        print(f"saved {output} (kept step {card['best_step']} of {args.steps}: the {kept})")
        for point in (card["validation"] or {}).get("curve", []):
            print(f"  step {point['step']:>6}  {validation.metric} {point[validation.metric]:.4f}")
    return 0
