"""Poly-encoders between the bi- and the cross-encoder: nDCG@10 and latency on held-out collections.

Runs pt.Experiment on Vaswani (93 queries) and NFCorpus test (323 queries), collections whose queries no model here
was trained on: dense retrieval alone (all-MiniLM-L6-v2 over an exact FAISS index), dense >> poly-encoder (one per
directory given, vectors read from the index), and dense >> cross-encoder (text loaded from the collection). Then
the time to score 100 and 1,000 candidates of a query, poly-encoder against cross-encoder, in the same process.

    python benchmarks/bench_poly.py --work /tmp/pts-dense-bench --poly runs/poly-m16 runs/poly-m64 runs/poly-m360 \
        --cross-encoder pyterrier_shallow/models/cross-encoder
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import pyterrier as pt
from _machine import describe_machine
from bench_dense_effectiveness import dense_index, markdown

import pyterrier_shallow as pts
from pyterrier_shallow import datasets
from pyterrier_shallow.poly import PolyEncoder

MEASURES = [pt.measures.nDCG @ 10, pt.measures.RR @ 10]


def poly_index(name: str, dataset, poly: PolyEncoder, model, shared_index, work: Path):
    """The index a poly-encoder reranks from: the shared dense index of ``model``, or its own where it has another
    document encoder (one it fine-tuned)."""
    if poly.bi_encoder is model:
        return shared_index
    return dense_index(f"{name}-{Path(poly.path).name}", dataset, poly.bi_encoder, work)


def effectiveness(name: str, split: str | None, polys: dict, cross_encoder, model, work: Path, depth: int):
    dataset = datasets.get(name)
    topics, qrels = dataset.get_topics(split), dataset.get_qrels(split)
    index = dense_index(name, dataset, model, work)
    first_stage = index.retriever(model, num_results=depth)
    systems = {"dense (all-MiniLM-L6-v2, exact)": first_stage}
    for label, poly in polys.items():
        reranker = poly.reranker(poly_index(name, dataset, poly, model, index, work))
        systems[f"dense % {depth} >> {label}"] = first_stage >> reranker
    if cross_encoder is not None:
        systems[f"dense % {depth} >> cross-encoder"] = first_stage >> pts.TextLoader(dataset) >> cross_encoder
    table = pt.Experiment(list(systems.values()), topics, qrels, MEASURES + ["mrt"], names=list(systems))
    table.insert(0, "collection", f"{name} ({len(topics)} q)")
    return table


def latency(polys: dict, cross_encoder, model, work: Path, depths: list[int], queries: int, repeats: int):
    """Milliseconds to score a query's candidates (first stage excluded), median over queries and repeats."""
    dataset = datasets.get("vaswani")
    index = dense_index("vaswani", dataset, model, work)
    topics = dataset.get_topics().head(queries)
    scorers = {label: poly.reranker(poly_index("vaswani", dataset, poly, model, index, work))
               for label, poly in polys.items()}
    if cross_encoder is not None:
        scorers["cross-encoder"] = cross_encoder
    rows = []
    for depth in depths:
        candidates = pts.TextLoader(dataset)(index.retriever(model, num_results=depth)(topics))
        per_query = {label: [] for label in scorers}
        for _ in range(repeats):
            for _qid, group in candidates.groupby("qid", sort=False):
                for label, scorer in scorers.items():
                    started = time.perf_counter()
                    scorer(group)
                    per_query[label].append((time.perf_counter() - started) * 1000)
        for label, values in per_query.items():
            rows.append({"candidates": depth, "scorer": label, "ms per query (median)": statistics.median(values)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pts-dense-bench"))
    parser.add_argument("--poly", nargs="+", type=Path, required=True, help="poly-encoder directories")
    parser.add_argument("--cross-encoder", default=None, help="a cross-encoder folder (default: none)")
    parser.add_argument("--cross-encoder-latency-only", action="store_true",
                        help="time the cross-encoder beside the poly-encoders, but leave it out of pt.Experiment")
    parser.add_argument("--ce-lengths", type=int, nargs=2, default=[64, 256],
                        help="the cross-encoder's query and document lengths (default: 64 256, the bi-encoder's)")
    parser.add_argument("--collections", nargs="+", default=["vaswani", "nfcorpus"])
    parser.add_argument("--query-length", type=int, default=None,
                        help="tokens of a query the poly-encoders read (default: each one's saved setting)")
    parser.add_argument("--depth", type=int, default=100, help="dense candidates reranked (default: 100)")
    parser.add_argument("--latency-depths", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--latency-queries", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = pts.BiEncoder(warn_truncation=False)
    polys = {}
    for path in args.poly:
        own_encoder = (path / "encoder").is_dir()
        poly = PolyEncoder(path, bi_encoder=None if own_encoder else model, query_length=args.query_length)
        poly.query_encoder.warn_truncation = False
        unique = [other.name for other in args.poly].count(path.name) == 1
        name = path.name if unique else f"{path.parent.name}/{path.name}"
        polys[f"poly-encoder m={poly.num_codes} ({name})"] = poly
    cross_encoder = None
    if args.cross_encoder is not None:
        query_length, doc_length = args.ce_lengths
        cross_encoder = pts.CrossEncoder(args.cross_encoder, query_length=query_length, doc_length=doc_length,
                                         warn_truncation=False)
    ranked_cross_encoder = None if args.cross_encoder_latency_only else cross_encoder
    tables = [effectiveness(name, "test" if name == "nfcorpus" else None, polys, ranked_cross_encoder, model,
                            args.work, args.depth) for name in args.collections]
    print(f"\nMachine: {describe_machine()}")
    print(markdown(pd.concat(tables, ignore_index=True)))
    timings = latency(polys, cross_encoder, model, args.work, args.latency_depths, args.latency_queries, args.repeats)
    print("\n" + markdown(timings))


if __name__ == "__main__":
    main()
