"""The ``pyterrier-shallow`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyterrier_shallow.budget.cli import add_sweep_parser
from pyterrier_shallow.poly.cli_args import add_train_poly_parser
from pyterrier_shallow.train.cli_args import add_train_parser


def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="compare BM25 with BM25 >> rerankers on a collection (default: the bundled Vaswani, offline)",
        description="Runs pt.Experiment: BM25 against BM25 followed by the rerankers, and prints the table.",
    )
    parser.add_argument("--dataset", default="vaswani", help="a collection name, or beir:<folder> (default: vaswani)")
    parser.add_argument("--split", default=None, help="the topics/qrels split (default: the collection's default)")
    parser.add_argument("--model", default=None, help="a cross-encoder (hub id or folder; default: the shipped one)")
    parser.add_argument("--depth", type=int, default=20,
                        help="BM25 candidates reranked per query (default: 20; 100 for the full-size experiment)")
    parser.add_argument("--index-dir", default=None, help="where the BM25 index is kept (default: a cache folder)")
    parser.add_argument("--max-queries", type=int, default=None, help="evaluate on the first N queries only")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from pyterrier_shallow.demo import run_demo

    table = run_demo(
        dataset=args.dataset,
        split=args.split,
        model=args.model,
        depth=args.depth,
        index_dir=args.index_dir,
        max_queries=args.max_queries,
        verbose=not args.quiet,
    )
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(table.to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the ``pyterrier-shallow`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="pyterrier-shallow",
        description="Fast multi-stage retrieval for PyTerrier: shallow and sparse cross-encoders under a budget.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo(subparsers)
    add_train_parser(subparsers)
    add_train_poly_parser(subparsers)
    add_sweep_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv[1:]``) and returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "train-poly"):
            return args.run(args, argv=argv[1:])  # the card records the exact command
        return args.run(args)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"pyterrier-shallow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
