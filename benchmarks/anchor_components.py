"""Scores a first stage's top candidates with each component an anchored reranker can mix, once, for later mixing.

For every collection, the first stage (BM25 with pyterrier-pisa, or dense retrieval) retrieves the top ``--depth`` of
each query (``bm25.pkl`` or ``dense.pkl``); every named scorer then scores those candidates, and each (collection,
scorer) pair is written to ``--out`` as a pickle of ``qid``, ``docno`` and ``score`` (skipped when it exists, so an
interrupted run resumes). ``benchmarks/anchor_selection.py``
mixes the columns as per-query z-scores and chooses weights by leaving one training collection out at a time::

    python benchmarks/anchor_components.py --out runs/anchor --threads 2 \
        --scorer cos=bi:minilm --scorer ce3=ce:default --scorer ce6=ce:pyterrier_shallow/models/cross-encoder-6-layers

Collections are ``name`` or ``name:split`` (default: the training collections NFCorpus dev, Cranfield, CISI and
WikiQA test, then the held-out Vaswani and NFCorpus test). WikiQA has nothing to retrieve: each question (with an
answer among its candidates) brings its own candidate sentences, which BM25 scores; it is left out of dense runs.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import pandas as pd
import torch

from pyterrier_shallow import BiEncoder, CrossEncoder, FaissIndex, PolyEncoder, TextLoader, datasets
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.gated import use_corpus_term_weights

COLLECTIONS = ["nfcorpus:dev", "cranfield", "cisi", "wikiqa:test", "vaswani", "nfcorpus:test"]


def scorer(spec: str, documents: list[dict], index: FaissIndex | None = None, states_dir: Path | None = None):
    """The transformer a scorer spec names.

    ``bi:PATH`` is a bi-encoder's cosine (``bi:minilm``: all-MiniLM-L6-v2), ``ce:PATH`` a cross-encoder scoring
    alone (``ce:default``: the shipped one), and ``ce-idf:PATH`` the same with its token-match term weighed by the
    inverse document frequencies of the collection being ranked instead of the training collections'.
    ``pre:PATH[@LENGTH]`` (``pre8:`` in int8) is a gated cross-encoder that reads the query in its top layers only,
    scoring alone from the collection's precomputed document states (an index built in ``states_dir`` when absent,
    and shared by models that differ only above the stored states; ``@LENGTH`` keeps the first LENGTH tokens of a
    document instead of the model's trained length). ``poly:default`` is the shipped poly-encoder
    alone, over the vectors of the collection's dense index (built when absent), whatever the first stage.
    """
    kind, _, path = spec.partition(":")
    if kind == "bi":
        return BiEncoder(None if path == "minilm" else path, warn_truncation=False).text_scorer()
    if kind in ("ce", "ce-idf"):
        model = CrossEncoder(None if path == "default" else path, warn_truncation=False, anchor=False)
        if kind == "ce-idf":
            use_corpus_term_weights(model, (document["text"] for document in documents))
        return model
    if kind in ("pre", "pre8"):
        from pyterrier_shallow.precomputed import PrecomputedCrossEncoder
        from pyterrier_shallow.precomputed.index import index_for_model

        path, _, length = path.partition("@")
        state_index = index_for_model(path, states_dir, lambda: documents, doc_length=int(length) if length else None)
        return PrecomputedCrossEncoder(state_index, path, anchor=False, warn_truncation=False, check_text=False,
                                       precision="int8" if kind == "pre8" else "float32")
    if kind == "poly":
        if index is None:
            raise ValueError("poly: scores the vectors of a dense index, which was not built")
        return PolyEncoder(None if path == "default" else path).reranker(index, anchor=False)
    raise ValueError(f"a scorer spec is bi:PATH, ce:PATH, ce-idf:PATH, pre:PATH, pre8:PATH or poly:PATH, not {spec!r}")


def collection_parts(spec: str):
    """Topics, qrels and documents of a ``name[:split]`` spec."""
    name, _, split = spec.partition(":")
    collection = datasets.get(name)
    split = split or None
    topics = collection.get_topics(split)
    qrels = collection.get_qrels(split)
    documents = [document for document in collection.get_corpus_iter(split=split)  # Cranfield has empty ones
                 if f"{document.get('title', '')} {document.get('text', '')}".strip()]
    if name == "wikiqa":  # questions without an answer among their candidates are left out, as is customary
        qrels = qrels[qrels["qid"].isin(set(qrels.loc[qrels["label"] > 0, "qid"]))].reset_index(drop=True)
    judged = set(qrels["qid"])
    return topics[topics["qid"].isin(judged)].reset_index(drop=True), qrels, documents


def candidate_set_bm25(spec: str, topics: pd.DataFrame, *, documents: list[dict], index_dir: Path) -> pd.DataFrame:
    """WikiQA's first stage: each question's own candidate sentences, scored by BM25 over the split's sentences.

    WikiQA gives every question its candidates, so there is nothing to retrieve; BM25 (PISA, over all the split's
    sentences) scores them, and a candidate sharing no term with its question scores 0.
    """
    name, _, split = spec.partition(":")
    given = datasets.get(name).get_results(split or None)
    given = given[given["qid"].isin(set(topics["qid"]))][["qid", "query", "docno"]]
    scored = bm25(documents, index_dir / spec.replace(":", "-"), num_results=len(documents))(topics)
    frame = given.merge(scored[["qid", "docno", "score"]], on=["qid", "docno"], how="left")
    frame["score"] = frame["score"].fillna(0.0).astype("float32")
    frame = frame.sort_values(["qid", "score", "docno"], ascending=[True, False, True], kind="stable")
    frame["rank"] = frame.groupby("qid").cumcount()
    return frame.reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scorer", action="append", required=True, help="NAME=bi:PATH or NAME=ce:PATH")
    parser.add_argument("--collections", nargs="+", default=None,
                        help="default: all six (WikiQA left out with --first-stage dense)")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--first-stage", choices=["bm25", "dense"], default="bm25",
                        help="BM25 (PISA) or dense retrieval (all-MiniLM-L6-v2, exact FAISS index)")
    parser.add_argument("--index-dir", type=Path, default=Path("runs/cache/anchor-indices"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.collections is None:
        args.collections = [spec for spec in COLLECTIONS if args.first_stage == "bm25" or not spec.startswith("wikiqa")]
    if args.first_stage != "bm25" and any(spec.startswith("wikiqa") for spec in args.collections):
        parser.error("WikiQA's candidates are given, and BM25 scores them; leave it out with --first-stage dense")
    torch.set_num_threads(args.threads)
    named = dict(item.split("=", 1) for item in args.scorer)
    for spec in args.collections:
        folder = args.out / spec.replace(":", "-")
        folder.mkdir(parents=True, exist_ok=True)
        topics, qrels, documents = collection_parts(spec)
        qrels.to_pickle(folder / "qrels.pkl")
        candidates_path = folder / f"{args.first_stage}.pkl"
        index = None
        if args.first_stage == "dense" or any(spec_.startswith("poly:") for spec_ in named.values()):
            index = FaissIndex(args.index_dir / f"{spec.replace(':', '-')}.faiss")
            if not index.built():
                index.indexer(BiEncoder(), verbose=False).index(documents)
        if candidates_path.is_file():
            candidates = pd.read_pickle(candidates_path)
        else:
            if spec.startswith("wikiqa"):
                first = functools.partial(candidate_set_bm25, spec, documents=documents, index_dir=args.index_dir)
            elif index is not None:
                first = index.retriever(BiEncoder(), num_results=args.depth) % args.depth
            else:
                first = bm25(documents, args.index_dir / spec.replace(":", "-"), num_results=args.depth) % args.depth
            candidates = first(topics)
            candidates[["qid", "docno", "query", "score", "rank"]].to_pickle(candidates_path.with_suffix(".tmp"))
            candidates_path.with_suffix(".tmp").rename(candidates_path)
        with_text = TextLoader(documents)(candidates[["qid", "docno", "query", "score", "rank"]])
        for name, scorer_spec in named.items():
            path = folder / f"{name}.pkl"
            if path.is_file():
                continue
            start = time.perf_counter()
            states_dir = args.index_dir / f"states-{spec.replace(':', '-')}"
            scored = scorer(scorer_spec, documents, index, states_dir)(with_text)
            scored[["qid", "docno", "score"]].to_pickle(path.with_suffix(".tmp"))
            path.with_suffix(".tmp").rename(path)
            print(f"{spec} {name}: {len(scored)} pairs, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
