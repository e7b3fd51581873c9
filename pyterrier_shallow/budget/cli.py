"""``pyterrier-shallow sweep``: the depth / latency trade-off of rerankers on a collection, as a table and a plot."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

BI_ENCODER = "bi-encoder:"
"""The prefix of a ``sweep`` model spec that names a bi-encoder scorer rather than a cross-encoder."""
DENSE = "dense:"
"""The prefix of a spec that names a bi-encoder scoring with document vectors stored in a dense index."""
POLY = "poly:"
"""The prefix of a spec that names a poly-encoder scoring with document vectors stored in a dense index."""
PRECOMPUTED = "pre:"
"""The prefix of a spec that names a gated cross-encoder scoring from precomputed document states."""
CASCADE = "cascade:"
"""The spec of the shipped anchored poly-encoder over every candidate, then the precomputed model on its top k."""
HYBRID = "hybrid:"
"""The spec of the untrained hybrid: BM25's score and the stored vectors' cosine, as per-query z-scores added."""


def add_sweep_parser(subparsers) -> None:
    """Adds the ``sweep`` subcommand to a ``pyterrier-shallow`` subparsers object."""
    parser = subparsers.add_parser(
        "sweep",
        help="effectiveness and per-query latency of rerankers at each rerank depth, and the best choice per budget",
        description=(
            "BM25 followed by each reranker at each rerank depth k: the measure over the topics (one scoring "
            "pass at the deepest k) and the per-query latency (queries one at a time, on a sample of the topics)."
        ),
    )
    parser.add_argument(
        "models",
        nargs="+",
        help=(
            "rerankers as NAME=SPEC (or SPEC, named after it): a cross-encoder's folder or hub id, "
            f"{BI_ENCODER}[PATH][@LAYERS] for a bi-encoder scorer that encodes the candidates' text (all-MiniLM-L6-v2 "
            f"without PATH; its first LAYERS layers with @LAYERS), {DENSE} for all-MiniLM-L6-v2 scoring with the "
            f"document vectors of --dense-index, {HYBRID} for the untrained hybrid of BM25 and that cosine "
            f"(per-query z-scores, equal weights), or {POLY}[PATH] for a poly-encoder scoring with them (the shipped "
            f"one without PATH), or {PRECOMPUTED}[PATH] for a gated cross-encoder reading the lower layers of its "
            f"candidates from a DocStateIndex of the collection (built in a cache folder when absent; the shipped "
            f"cross-encoder-precomputed without PATH), or {CASCADE} for the shipped poly-encoder reranking every "
            f"candidate and the shipped precomputed cross-encoder reranking its top k after it (anchored on its "
            f"score), e.g. two={BI_ENCODER}@2 six={BI_ENCODER} poly={POLY}"
        ),
    )
    parser.add_argument("--dataset", default="vaswani", help="a collection name (default: vaswani, bundled)")
    parser.add_argument("--split", default=None, help="the topics/qrels split (default: the collection's default)")
    parser.add_argument("--depths", default=None, help="comma-separated depths (default: 1,2,5,... to --max-depth)")
    parser.add_argument("--max-depth", type=int, default=1000, help="the deepest k of the default grid (1000)")
    parser.add_argument("--queries", type=int, default=None, help="evaluate on the first N topics only")
    parser.add_argument("--latency-queries", type=int, default=20, help="topics timed per setting (default: 20)")
    parser.add_argument("--budgets", default="10,20,50,100,200,500", help="comma-separated budgets in ms")
    parser.add_argument("--precision", choices=["float32", "int8"], default="float32", help="CPU inference precision")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--index-dir", default=None, help="where the BM25 index is kept (default: a cache folder)")
    parser.add_argument("--dense-index", default=None,
                        help=f"the dense index of the collection that {DENSE} and {POLY} models read document vectors "
                             "from, built with all-MiniLM-L6-v2 when absent (default: a cache folder)")
    parser.add_argument("--states-dir", default=None,
                        help=f"the folder of the collection's document-state indexes that {PRECOMPUTED} models read, "
                             "one a model, built when absent (default: a cache folder)")
    parser.add_argument("--out", default=None, help="a folder for sweep.csv, budgets.csv and sweep.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Runs the sweep the parsed arguments describe, prints its tables and writes its files."""
    import pandas as pd
    import torch

    from pyterrier_shallow import datasets
    from pyterrier_shallow._cache import cache_dir
    from pyterrier_shallow.bm25 import bm25, bm25_index
    from pyterrier_shallow.budget.plot import plot_tradeoff
    from pyterrier_shallow.budget.sweep import depth_grid, sweep
    from pyterrier_shallow.text_loader import TextLoader

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    depths = _ints(args.depths) if args.depths else depth_grid(args.max_depth)
    budgets = [float(value) for value in args.budgets.split(",") if value.strip()]
    collection = datasets.get(args.dataset)
    split = args.split or collection.default_split
    topics, qrels = collection.get_topics(split), collection.get_qrels(split)
    if args.queries is not None:
        topics = topics.head(args.queries)
    index_dir = Path(args.index_dir) if args.index_dir else cache_dir() / "bm25" / collection.name
    bm25_index(collection, index_dir, verbose=not args.quiet)  # progress while indexing, none per timed query
    first_stage = bm25(collection, index_dir, num_results=max(depths))
    dense_dir = Path(args.dense_index) if args.dense_index else cache_dir() / "dense" / collection.name
    dense_index = _StoredVectors(collection, dense_dir, verbose=not args.quiet)
    states_dir = Path(args.states_dir) if args.states_dir else cache_dir() / "states" / collection.name
    states = _DocStates(collection, states_dir, verbose=not args.quiet)
    with tempfile.TemporaryDirectory(prefix="pyterrier-shallow-sweep-") as work:  # holds cut bi-encoders
        rerankers = {
            name: _reranker(spec, precision=args.precision, work=Path(work) / str(number), dense_index=dense_index,
                            states=states)
            for number, (name, spec) in enumerate(_named_models(args.models).items())
        }
        result = sweep(
            first_stage,
            rerankers,
            topics,
            qrels,
            text_loader=TextLoader(collection),
            depths=depths,
            latency_queries=args.latency_queries,
            verbose=not args.quiet,
        )
    budget_table = result.budget_table(budgets)
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(result.describe())
        print(result.table.round(4).to_string(index=False))
        print(budget_table.round(4).to_string(index=False))
    if args.out:
        out = Path(args.out)
        _write_csv(result.table, out / "sweep.csv")
        _write_csv(budget_table, out / "budgets.csv")
        plot_tradeoff(result, out / "sweep.png", budgets_ms=budgets)
        print(f"wrote {out / 'sweep.csv'}, {out / 'budgets.csv'} and {out / 'sweep.png'}")
    return 0


class _StoredVectors:
    """The collection's dense index of all-MiniLM-L6-v2 vectors, built on first use."""

    def __init__(self, collection, path: Path, *, verbose: bool):
        self.collection, self.path, self.verbose = collection, path, verbose

    def index(self, encoder):
        from pyterrier_shallow.dense import FaissIndex

        index = FaissIndex(self.path)
        if not index.built():
            index.indexer(encoder, verbose=self.verbose).index(self.collection.get_corpus_iter())
        return index


class _DocStates:
    """The collection's precomputed document states for a gated cross-encoder, built on first use."""

    def __init__(self, collection, root: Path, *, verbose: bool):
        self.collection, self.root, self.verbose = collection, root, verbose

    def reranker(self, model: str | None, precision: str, anchor=None):
        from pyterrier_shallow.precomputed import PrecomputedCrossEncoder
        from pyterrier_shallow.precomputed.index import index_for_model
        from pyterrier_shallow.precomputed.reranker import model_source

        source = model_source(model)  # named: an index shared by fingerprint may record another model's folder
        index = index_for_model(source, self.root, self.collection.get_corpus_iter, verbose=self.verbose)
        return PrecomputedCrossEncoder(index, source, precision=precision, anchor=anchor, warn_truncation=False)


def _reranker(spec: str, *, precision: str, work: Path, dense_index: _StoredVectors, states: _DocStates):
    """A cross-encoder for a folder or hub id; a bi-encoder or poly-encoder scorer for the prefixed specs."""
    if spec.startswith(CASCADE):
        if spec != CASCADE:
            raise ValueError(f"{spec!r}: {CASCADE} takes no path; it pairs the shipped poly-encoder and "
                             "cross-encoder-precomputed, whose anchor was chosen for each other")
        from pyterrier_shallow.budget.sweep import Cascade
        from pyterrier_shallow.precomputed.cascade import AFTER_POLY_ENCODER

        poly = _reranker(POLY, precision="float32", work=work, dense_index=dense_index, states=states)
        return Cascade(poly, states.reranker(None, precision, anchor=AFTER_POLY_ENCODER))
    if spec.startswith(PRECOMPUTED):
        return states.reranker(spec.removeprefix(PRECOMPUTED) or None, precision)
    if not spec.startswith((BI_ENCODER, DENSE, POLY, HYBRID)):
        from pyterrier_shallow.cross_encoder import CrossEncoder

        return CrossEncoder(spec, precision=precision, warn_truncation=False)
    from pyterrier_shallow.dense import BiEncoder, save_first_layers

    if precision != "float32":
        raise ValueError(f"--precision {precision} applies to cross-encoders only, not to {spec!r}")
    if spec.startswith((DENSE, HYBRID)):
        prefix = DENSE if spec.startswith(DENSE) else HYBRID
        if spec != prefix:
            raise ValueError(f"{spec!r}: {prefix} takes no path; it scores with all-MiniLM-L6-v2's stored vectors")
        encoder = BiEncoder(warn_truncation=False)
        return dense_index.index(encoder).scorer(encoder, anchor=prefix == HYBRID)
    if spec.startswith(POLY):
        from pyterrier_shallow.poly import PolyEncoder

        poly = PolyEncoder(spec.removeprefix(POLY) or None)
        poly.bi_encoder.warn_truncation = poly.query_encoder.warn_truncation = False
        return poly.reranker(dense_index.index(poly.bi_encoder))
    source, at, layers = spec.removeprefix(BI_ENCODER).partition("@")
    source = source or None
    if at:
        try:
            num_layers = int(layers)
        except ValueError as err:
            raise ValueError(f"{spec!r}: the number after @ must be a layer count") from err
        source = save_first_layers(work, num_layers, source)
    return BiEncoder(source, warn_truncation=False).text_scorer()


def _ints(text: str) -> list[int]:
    try:
        return [int(value) for value in text.split(",") if value.strip()]
    except ValueError as err:
        raise ValueError(f"--depths must be comma-separated integers, got {text!r}") from err


def _named_models(specs: list[str]) -> dict[str, str]:
    named = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).name
        if name in named:
            raise ValueError(f"two models are named {name!r}; name them NAME=PATH")
        named[name] = path
    return named


def _write_csv(frame, path: Path) -> None:
    from pyterrier_shallow._io import atomic_write_with

    atomic_write_with(path, lambda temporary: frame.to_csv(temporary, index=False))
