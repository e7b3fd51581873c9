"""Pairs per second of pyterrier_shallow.CrossEncoder against sentence-transformers' CrossEncoder.

Both score the same 1,000 real NFCorpus (query, document) pairs (test qrels, in file order) with the same
checkpoint (the first two layers of all-MiniLM-L6-v2 with a classification head) at the same maximum length, in
one process, alternating runs so that both see the same machine state.

    python benchmarks/bench_cross_encoder.py --data ../shared/data --pairs 1000 --max-length 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe_machine
from sentence_transformers import CrossEncoder as ReferenceCrossEncoder
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

import pyterrier_shallow as pts
from pyterrier_shallow._hf import minilm_path


def load_pairs(data: Path, count: int) -> tuple[list[str], list[str]]:
    docs = dict(line.rstrip("\n").split("\t", 1) for line in open(data / "nfcorpus" / "test.docs", encoding="utf-8"))
    queries = dict(
        line.rstrip("\n").split("\t", 1) for line in open(data / "nfcorpus" / "queries.beir-test.tsv", encoding="utf-8")
    )
    pairs = []
    for line in open(data / "nfcorpus" / "test.2-1-0.qrel", encoding="utf-8"):
        qid, _, docno, _ = line.split()
        if qid in queries and docno in docs:
            pairs.append((queries[qid], docs[docno]))
        if len(pairs) == count:
            break
    return [q for q, _ in pairs], [d for _, d in pairs]


def build_checkpoint(directory: Path, layers: int) -> Path:
    config = BertConfig.from_pretrained(minilm_path(), num_hidden_layers=layers, num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification.from_pretrained(minilm_path(), config=config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    queries, texts = load_pairs(args.data, args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp), args.layers)
        ours = pts.CrossEncoder(
            checkpoint, max_length=args.max_length, batch_size=args.batch_size, warn_truncation=False
        )
        reference = ReferenceCrossEncoder(
            str(checkpoint), max_length=args.max_length, activation_fn=torch.nn.Identity()
        )
        runners = {
            "sentence-transformers CrossEncoder.predict": lambda: reference.predict(
                list(zip(queries, texts)), batch_size=args.batch_size, show_progress_bar=False
            ),
            "pyterrier_shallow.CrossEncoder": lambda: ours.score_pairs(queries, texts),
        }
        outputs = {name: run() for name, run in runners.items()}  # warm-up, and the agreement check
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    names = list(runners)
    diff = float(np.abs(np.asarray(outputs[names[0]]) - np.asarray(outputs[names[1]])).max())
    stats = ours.last_stats
    print(f"machine: {describe_machine()}")
    print(
        f"{len(queries)} NFCorpus pairs, {args.layers}-layer MiniLM cross-encoder, max_length {args.max_length}, "
        f"batch {args.batch_size}; {stats.tokens} real tokens, {stats.truncated_docs} documents truncated; "
        f"max score difference {diff:.2e}"
    )
    baseline = statistics.median(times[names[0]])
    print("| scorer | pairs/s | tokens/s | ratio |")
    print("|---|---|---|---|")
    for name in names:
        seconds = statistics.median(times[name])
        print(f"| {name} | {len(queries) / seconds:.1f} | {stats.tokens / seconds:.0f} | {baseline / seconds:.2f}x |")


if __name__ == "__main__":
    main()
