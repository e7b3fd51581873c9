"""Cost per candidate of shallow cross-encoders against today's default ``CrossEncoder()``, in one run, with nDCG@10.

Every reranker scores the same candidates, BM25's top ``--depth`` of the same queries, one query at a time (as a
served query is), runs alternating so that all see the same machine state, at each torch thread count asked for.
The figure is the median over repeats of the time to rerank all the sampled queries, divided by the candidates;
the ratio is the baseline's (the first reranker named) over each one's. nDCG@10 is over all the collection's
queries, from the scores ``benchmarks/anchor_components.py`` cached (``--scores NAME=COMPONENT``), each reranker
anchored as it ships::

    python benchmarks/bench_precomputed.py --collection vaswani --threads 1 2 \
        --reranker today=ce:default --reranker precomputed=pre:pyterrier_shallow/models/cross-encoder-precomputed \
        --reranker precomputed-int8=pre8:pyterrier_shallow/models/cross-encoder-precomputed

Specs: ``ce:PATH`` (``CrossEncoder``, ``ce:default`` the shipped default), ``ce8:PATH`` (the same in int8),
``pre:PATH`` and ``pre8:PATH`` (``PrecomputedCrossEncoder`` over the collection's ``DocStateIndex``, float32 or
int8; the index is built once, in ``--index-dir``, and its build time and size are reported).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd
import pyterrier as pt
import torch
from _machine import describe_machine
from anchor_components import collection_parts
from pyterrier.measures import nDCG

from pyterrier_shallow import CrossEncoder
from pyterrier_shallow.precomputed import PrecomputedCrossEncoder


def make_reranker(spec: str, documents: list[dict], index_dir: Path, collection: str) -> tuple[object, dict]:
    """The reranker a spec names (anchored as its folder says), and what building its index took."""
    kind, _, path = spec.partition(":")
    if kind in ("ce", "ce8"):
        model = None if path == "default" else path
        return CrossEncoder(model, precision="int8" if kind == "ce8" else "float32", warn_truncation=False), {}
    if kind in ("pre", "pre8"):
        from pyterrier_shallow.precomputed.index import index_for_model

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation, counted in the index's meta
            index = index_for_model(path, index_dir / f"states-{collection}", lambda: documents)
        built = {"open_or_build_s": round(time.perf_counter() - start, 1)}
        size = sum(file.stat().st_size for file in index.path.iterdir())
        built.update(index_mb=round(size / 1e6, 1), docs=len(index), tokens=int(index.meta["num_tokens"]),
                     kb_per_doc=round(size / len(index) / 1e3, 1))
        reranker = PrecomputedCrossEncoder(index, path, precision="int8" if kind == "pre8" else "float32",
                                           warn_truncation=False, check_text=False)
        return reranker, built
    raise ValueError(f"a reranker spec is ce:PATH, ce8:PATH, pre:PATH or pre8:PATH, not {spec!r}")


def ndcg(work: Path, collection: str, component: str, anchor, qrels: pd.DataFrame) -> float | None:
    """nDCG@10 of a cached component over BM25's cached candidates, mixed with BM25 as ``anchor`` says."""
    folder = work / collection
    if not (folder / f"{component}.pkl").is_file():
        return None
    frame = pd.read_pickle(folder / "bm25.pkl")
    scores = frame[["qid", "docno"]].merge(pd.read_pickle(folder / f"{component}.pkl"), on=["qid", "docno"],
                                           how="left", validate="one_to_one")["score"].to_numpy()
    if anchor is not None:
        scores = anchor.combine(frame["qid"].to_numpy(), frame["score"].to_numpy(), scores)
    ranked = frame[["qid", "docno"]].assign(score=scores)
    judged = qrels[qrels["qid"].isin(frame["qid"].unique())]
    return round(float(pt.Evaluate(ranked, judged, metrics=[nDCG @ 10])["nDCG@10"]), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="vaswani", help="name or name:split (default: vaswani)")
    parser.add_argument("--reranker", action="append", required=True, help="NAME=SPEC; the first is the baseline")
    parser.add_argument("--scores", action="append", default=[],
                        help="NAME=COMPONENT: the cached scores of a reranker, for its nDCG@10")
    parser.add_argument("--work", type=Path, default=Path("runs/anchor"), help="anchor_components.py's --out")
    parser.add_argument("--index-dir", type=Path, default=Path("runs/cache/anchor-indices"))
    parser.add_argument("--queries", type=int, default=20, help="queries timed (default: 20)")
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates a query (default: 100)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    collection = args.collection.replace(":", "-")
    _, qrels, documents = collection_parts(args.collection)
    texts = {document["docno"]: document["text"] for document in documents}
    frame = pd.read_pickle(args.work / collection / "bm25.pkl")
    frame = frame[frame["rank"] < args.depth].assign(text=lambda f: f["docno"].map(texts))
    sample = frame[frame["qid"].isin(sorted(frame["qid"].unique())[: args.queries])]
    queries = [group for _, group in sample.groupby("qid", sort=False)]
    named = dict(item.split("=", 1) for item in args.reranker)
    components = dict(item.split("=", 1) for item in args.scores)
    rerankers, indexes = {}, {}
    for name, spec in named.items():
        rerankers[name], indexes[name] = make_reranker(spec, documents, args.index_dir, collection)
    results = {"collection": args.collection, "queries_timed": len(queries), "candidates": len(sample),
               "depth": args.depth, "rerankers": named, "indexes": indexes, "timings": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for reranker in rerankers.values():
            reranker(queries[0])  # loads the model, warms the caches
        times = {name: [] for name in rerankers}
        for _ in range(args.repeats):
            for name, reranker in rerankers.items():
                start = time.perf_counter()
                for group in queries:
                    reranker(group)
                times[name].append(time.perf_counter() - start)
        baseline = statistics.median(times[next(iter(rerankers))])
        results["timings"][threads] = {
            "machine": describe_machine(),
            **{name: {"ms_per_candidate": round(1000 * statistics.median(run) / len(sample), 3),
                      "ms_per_query": round(1000 * statistics.median(run) / len(queries), 1),
                      "ratio": round(baseline / statistics.median(run), 2)} for name, run in times.items()},
        }
    results["ndcg@10"] = {name: ndcg(args.work, collection, components[name], rerankers[name].anchoring, qrels)
                          if name in components else None for name in named}
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
