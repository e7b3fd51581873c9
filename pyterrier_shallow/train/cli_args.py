"""The ``pyterrier-shallow train`` command line: its options; :mod:`.cli_run` builds the data and runs the loop."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("ranking", "pairs", "pseudo-title", "pseudo-sentence")
LOSS_NAMES = ("bce", "gbce", "margin-mse", "soft-label", "softmax-ce")
"""The ``--loss`` choices: the keys of :data:`pyterrier_shallow.train.losses.LOSSES` (kept here so that parsing
the command line does not import torch)."""
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


def add_distillation_arguments(parser: argparse.ArgumentParser):
    """Adds the options of distilling a teacher's scores (``train`` and ``train-poly``); returns their group."""
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
    return distil


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
    io.add_argument("--match-term", action="store_true",
                    help="gated models: add the token-match term (each query token's best cosine in the document, "
                         "weighed by its inverse document frequency over the training collections' documents), its "
                         "weight starting at 0")
    io.add_argument("--query-gates", action="store_true",
                    help="gated models: let query tokens read the document too, through closed gates of their own "
                         "(symmetric; each candidate then encodes its query again)")
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

    add_distillation_arguments(parser)

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--loss", choices=LOSS_NAMES, default="gbce", help="default: gbce")
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
    opt.add_argument("--anchor", type=_anchor_weights, default=None, metavar="FIRST,MODEL",
                     help="train an anchored model: the loss sees FIRST * z(first-stage score) + MODEL * z(model "
                          "score) per query, both weights learnt from these values and saved in anchor.json (needs "
                          "candidates scored by a first stage, e.g. --teacher hybrid; default: no anchor)")
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
        "with many BM25 negatives per query, validating on held-out queries; interrupted runs resume, and a file "
        "named OUT/_training/stop ends a run after its current step, publishing its best checkpoint.",
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
    from .cli_run import run_training, torch_threads

    with torch_threads(args.threads):
        return run_training(args, argv if argv is not None else sys.argv[2:])




def _anchor_weights(text: str) -> tuple[float, float]:
    """Parses ``FIRST,MODEL`` (two positive numbers) for ``--anchor``."""
    parts = text.split(",")
    try:
        weights = tuple(float(part) for part in parts)
    except ValueError:
        weights = ()
    if len(weights) != 2 or not all(weight > 0 for weight in weights):
        raise argparse.ArgumentTypeError(f"--anchor takes two positive weights FIRST,MODEL, e.g. 1,1; got {text!r}")
    return weights
