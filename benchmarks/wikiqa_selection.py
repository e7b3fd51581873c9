"""Chooses between training recipes on a collection none of them saw: WikiQA test, each question's own candidates.

Comparing recipes on the held-out collections (Vaswani, NFCorpus test) would make them part of training; comparing
them on the validation queries of a training collection measures how well a model fits that collection, not how
it transfers. WikiQA test is neither, for models not trained on WikiQA: every question with at least one answer
(243 of 633) has its candidate sentences reranked, and nDCG@10 and RR@10 are reported. A cross-encoder whose
training card names WikiQA is refused::

    python benchmarks/wikiqa_selection.py --threads 2 --reranker "cosine=bi:minilm" \
        --reranker "run a=ce:runs/a" --reranker "run b=ce:runs/b" --out runs/wikiqa-selection.json

Specs are those of ``held_out.py``: ``bi:PATH`` (a bi-encoder's cosine) or ``ce:PATH`` (a cross-encoder folder).
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
from held_out import reranker

from pyterrier_shallow import datasets
from pyterrier_shallow._warnings import pipelines_timed_apart


def trained_on_wikiqa(spec: str) -> bool:
    """Whether a ``ce:PATH`` spec names a folder whose training card lists WikiQA among its data."""
    kind, _, path = spec.partition(":")
    card = Path(path) / "training_card.json"
    if kind != "ce" or not card.is_file():
        return False
    return "wikiqa" in json.dumps(json.loads(card.read_text(encoding="utf-8")).get("data", {})).lower()


def answered_candidates(split: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Topics, qrels and candidate frame of the questions of ``split`` that have at least one answer."""
    collection = datasets.get("wikiqa")
    qrels = collection.get_qrels(split)
    answered = set(qrels.loc[qrels["label"] > 0, "qid"])
    topics = collection.get_topics(split)
    topics = topics[topics["qid"].isin(answered)].reset_index(drop=True)
    candidates = collection.get_results(split)
    candidates = candidates[candidates["qid"].isin(answered)].reset_index(drop=True)
    return topics, qrels[qrels["qid"].isin(answered)], candidates.assign(score=0.0, rank=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", action="append", required=True, help="NAME=bi:PATH or NAME=ce:PATH")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    named = dict(item.split("=", 1) for item in args.reranker)
    refused = [name for name, spec in named.items() if trained_on_wikiqa(spec)]
    if refused:
        parser.error(f"trained on WikiQA, so it cannot be compared on it: {', '.join(refused)}")
    topics, qrels, candidates = answered_candidates(args.split)
    given = pt.Transformer.from_df(candidates, uniform=True)
    with tempfile.TemporaryDirectory() as scratch:
        models = {name: reranker(spec, Path(scratch)) for name, spec in named.items()}
        with pipelines_timed_apart():
            table = pt.Experiment([given >> model for model in models.values()], topics, qrels,
                                  [pt.measures.nDCG @ 10, pt.measures.RR @ 10], names=list(models), round=4)
    table.insert(0, "collection", f"wikiqa {args.split} ({len(topics)} answered q)")
    print(table.to_string(index=False), flush=True)
    if args.out is not None:
        payload = {"machine": describe_machine(), "rerankers": named, "rows": table.to_dict(orient="records")}
        args.out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
