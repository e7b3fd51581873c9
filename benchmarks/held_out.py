"""Held-out effectiveness of rerankers over BM25: Vaswani (all 93 queries) and NFCorpus test (all 323).

Every reranker sees BM25's top ``--depth`` (pyterrier-pisa, default parameters); ``pt.Experiment`` gives nDCG@10 and
mean response time beside BM25 alone. Rerankers are named specs, repeatable::

    python benchmarks/held_out.py --threads 2 \
        --reranker "bi-encoder 6 layers=bi:minilm" --reranker "2-layer student=bi:runs/bi-l2" \
        --reranker "CE=ce:pyterrier_shallow/models/cross-encoder" --out docs/held_out.json

``bi:PATH`` is a bi-encoder folder's cosine (``bi:minilm``: the bundled all-MiniLM-L6-v2; ``bi:minilm@2``: its
first 2 layers as they are), ``ce:PATH`` a cross-encoder folder (``ce:default``: the shipped one).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
import pyterrier as pt
import torch
from _machine import describe_machine

from pyterrier_shallow import BiEncoder, CrossEncoder, TextLoader, datasets
from pyterrier_shallow._warnings import pipelines_timed_apart
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.dense import save_first_layers

SPLITS = {"vaswani": None, "nfcorpus": "test"}


def reranker(spec: str, scratch: Path) -> pt.Transformer:
    """The transformer a ``bi:PATH`` or ``ce:PATH`` spec names."""
    kind, _, path = spec.partition(":")
    if kind == "bi":
        base, _, layers = path.partition("@")
        folder = None if base == "minilm" else base
        if layers:
            folder = save_first_layers(scratch / f"cut-{layers}", int(layers), folder)
        return BiEncoder(folder, warn_truncation=False).text_scorer()
    if kind == "ce":
        return CrossEncoder(None if path == "default" else path, warn_truncation=False)
    raise ValueError(f"a reranker spec is bi:PATH or ce:PATH, not {spec!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", action="append", required=True, help="NAME=bi:PATH or NAME=ce:PATH")
    parser.add_argument("--collections", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--max-queries", type=int, default=None, help="the first N queries only (a quick look)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--index-dir", type=Path, default=Path("runs/cache/held-out-bm25"))
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    named = dict(item.split("=", 1) for item in args.reranker)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        transformers = {name: reranker(spec, Path(scratch)) for name, spec in named.items()}
        for collection_name in args.collections:
            collection = datasets.get(collection_name)
            split = SPLITS[collection_name]
            topics = collection.get_topics(split) if split else collection.get_topics()
            qrels = collection.get_qrels(split) if split else collection.get_qrels()
            if args.max_queries:
                topics = topics.head(args.max_queries)
            documents = list(collection.get_corpus_iter(split=split) if split else collection.get_corpus_iter())
            first = bm25(documents, args.index_dir / collection_name, num_results=args.depth) % args.depth
            text = TextLoader(documents)
            pipelines = [first] + [first >> text >> model for model in transformers.values()]
            with pipelines_timed_apart():
                table = pt.Experiment(pipelines, topics, qrels, [pt.measures.nDCG @ 10, "mrt"],
                                      names=["BM25", *transformers], round=4)
            table.insert(0, "collection", f"{collection_name} ({len(topics)} q)")
            rows.append(table)
            print(table.to_string(index=False), flush=True)
    result = pd.concat(rows, ignore_index=True)
    if args.out is not None:
        payload = {"machine": describe_machine(), "depth": args.depth, "rerankers": named,
                   "rows": result.to_dict(orient="records")}
        args.out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
