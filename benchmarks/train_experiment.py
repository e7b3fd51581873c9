"""Trains shallow cross-encoders with BCE and gBCE and measures them on held-out collections.

Each arm is one ``pyterrier-shallow train`` command on the same data and steps: (a) BCE with 1 negative, (b) BCE
with 15 negatives, (c) gBCE (t = 0.75) with 15 negatives, (d) the same as (c) with 6 layers. Every model reranks
BM25's top 100 on Vaswani (93 queries, never trained on) and NFCorpus test (unseen queries), measured by nDCG@10
and mean response time through ``pt.Experiment`` beside BM25 alone. Trained models are kept, so a second call only
measures. Run from the repository root::

    python benchmarks/train_experiment.py --runs runs/experiment --arms a b c
    python benchmarks/train_experiment.py --arms default --model pyterrier_shallow/models/cross-encoder
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import torch
from _machine import describe_machine

from pyterrier_shallow import CrossEncoder, TextLoader, datasets
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.train.teacher import per_query_zscores

COMMON = [
    "--layers", "2", "--data", "nfcorpus:dev", "--data", "wikiqa:train", "--data", "cranfield", "--data", "cisi",
    "--validate", "nfcorpus:dev", "--val-queries", "30", "--val-depth", "20", "--queries-per-step", "1",
    "--lr", "5e-5", "--head-lr", "1e-3", "--warmup", "50", "--query-length", "32", "--doc-length", "128",
    "--device", "cpu", "--quiet",
]
ARMS = {
    "a": ("2 layers, BCE, 1 negative", ["--loss", "bce", "--negatives", "1"]),
    "b": ("2 layers, BCE, 15 negatives", ["--loss", "bce", "--negatives", "15"]),
    "c": ("2 layers, gBCE t=0.75, 15 negatives", ["--loss", "gbce", "--t", "0.75", "--negatives", "15"]),
    "d": ("6 layers, gBCE t=0.75, 15 negatives", ["--loss", "gbce", "--t", "0.75", "--negatives", "15",
                                                   "--layers", "6"]),
}


def train_command(arm: str, out: Path, *, steps: int, threads: int, index_dir: Path) -> list[str]:
    """The ``pyterrier-shallow train`` command of one arm."""
    extra = ARMS[arm][1]
    return ["pyterrier-shallow", "train", "--out", str(out), *COMMON, "--steps", str(steps),
            "--eval-every", str(max(1, steps // 3)), "--threads", str(threads), "--index-dir", str(index_dir), *extra]


def _collections(index_dir: Path, nfcorpus_queries: int | None) -> dict:
    vaswani = datasets.vaswani()
    nfcorpus = datasets.nfcorpus()
    topics = nfcorpus.get_topics("test")
    if nfcorpus_queries is not None and nfcorpus_queries < len(topics):
        chosen = np.sort(np.random.default_rng(0).choice(len(topics), size=nfcorpus_queries, replace=False))
        topics = topics.iloc[chosen].reset_index(drop=True)
    return {
        "Vaswani": (vaswani, vaswani.get_topics(), vaswani.get_qrels(), index_dir / "eval-vaswani"),
        "NFCorpus test": (nfcorpus, topics, nfcorpus.get_qrels("test"), index_dir / "eval-nfcorpus-test"),
    }


def measure(models: dict[str, str | None], collections: dict, *, depth: int, bm25_weight: float | None,
            runs: Path) -> list:
    """nDCG@10 and mean response time of BM25 and of BM25 >> each model, per collection.

    With ``bm25_weight``, each model's scores are also mixed with BM25's (per-query z-scores) from the same runs.
    """
    rows = []
    for name, (dataset, topics, qrels, index) in collections.items():
        first_stage = bm25(dataset, index) % depth
        loader = TextLoader(dataset)
        systems = [first_stage] + [first_stage >> loader >> CrossEncoder(model, warn_truncation=False)
                                   for model in models.values()]
        names = ["BM25"] + [f"BM25 >> {label}" for label in models]
        save_dir = runs / "eval" / re.sub(r"\W+", "-", name)
        save_dir.mkdir(parents=True, exist_ok=True)
        files = [re.sub(r"\W+", "_", label) for label in names]
        table = pt.Experiment(systems, topics, qrels, [pt.measures.nDCG @ 10, "mrt"], names=files,
                              save_dir=str(save_dir), save_mode="overwrite")
        table["name"] = names
        if bm25_weight is not None:
            first = first_stage.transform(topics)[["qid", "docno", "score"]].astype({"qid": str, "docno": str})
            mixed = []
            for file in files[1:]:
                reranked = pt.io.read_results(str(save_dir / f"{file}.res.gz")).astype({"qid": str, "docno": str})
                both = reranked.merge(first, on=["qid", "docno"], suffixes=("", "_bm25"))
                score = per_query_zscores(both, "score") + bm25_weight * per_query_zscores(both, "score_bm25")
                mixed.append(pt.model.add_ranks(both.assign(score=score).drop(columns=["rank"])))
            extra = pt.Experiment(mixed, topics, qrels, [pt.measures.nDCG @ 10],
                                  names=[f"{label}, + {bm25_weight:g} z(BM25)" for label in names[1:]])
            table = pd.concat([table, extra.assign(mrt=float("nan"))], ignore_index=True)
        for _, row in table.iterrows():
            rows.append({"collection": name, "queries": len(topics), "system": row["name"],
                         "ndcg@10": float(row["nDCG@10"]), "mrt_ms": float(row["mrt"])})
            print(f"{name:14} {row['name']:60} nDCG@10 {row['nDCG@10']:.3f}  mrt {row['mrt']:.0f} ms", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/experiment", help="trained models, caches and results")
    parser.add_argument("--arms", nargs="+", default=["a", "b", "c"], help=f"of {sorted(ARMS)}, or default")
    parser.add_argument("--model", default=None, help="the folder measured as arm 'default' (None: shipped)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates reranked")
    parser.add_argument("--nfcorpus-queries", type=int, default=None, help="a seeded sample of NFCorpus test")
    parser.add_argument("--bm25-weight", type=float, default=None, help="also measure z(model) + W z(BM25)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    models, commands = {}, {}
    for arm in args.arms:
        if arm == "default":
            models["default"] = args.model
            continue
        out = runs / f"arm-{arm}"
        command = train_command(arm, out, steps=args.steps, threads=args.threads, index_dir=runs / "cache")
        commands[arm] = shlex.join(command)
        if not (out / "config.json").exists():
            print("+", commands[arm], flush=True)
            subprocess.run(command, check=True)
        models[f"({arm}) {ARMS[arm][0]}"] = str(out)
    rows = measure(models, _collections(runs / "cache", args.nfcorpus_queries), depth=args.depth,
                   bm25_weight=args.bm25_weight, runs=runs)
    result = {"machine": describe_machine(), "commands": commands, "rows": rows, "argv": sys.argv}
    path = runs / f"results-{'-'.join(args.arms)}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"machine: {result['machine']}\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
