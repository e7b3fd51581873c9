"""Documents encoded per second: pyterrier_shallow.BiEncoder against sentence-transformers and pyterrier_dr.

All encoders run all-MiniLM-L6-v2 (offline weights) on the same real documents (the first --docs of the
collection, in file order), in one process, in alternating rounds so that each sees the same machine state; the
median round is reported. sentence-transformers runs `SentenceTransformer.encode` at its default batch size (32);
pyterrier_dr runs `SBertBiEncoder.encode_docs` (sentence-transformers underneath) when it is installed.

    python benchmarks/bench_bi_encoder.py --collection nfcorpus --docs 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
from _machine import describe_machine
from sentence_transformers import SentenceTransformer

import pyterrier_shallow.dense as dense
from pyterrier_shallow import datasets
from pyterrier_shallow._hf import minilm_path


def load_texts(collection: str, count: int) -> list[str]:
    corpus = datasets.get(collection).get_corpus_iter(split="test" if collection == "nfcorpus" else None)
    return [document["text"] for document in itertools.islice(corpus, count)]


def encoders(ours: dense.BiEncoder) -> dict:
    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    systems = {
        f"pyterrier_shallow BiEncoder (batch {ours.batch_size}, {ours.token_budget}-token budget)": ours.encode_docs,
        "sentence-transformers encode (batch 32)": lambda texts: reference.encode(texts, batch_size=32),
    }
    try:
        from pyterrier_dr import SBertBiEncoder
    except ImportError:
        print("pyterrier_dr is not installed: left out")
    else:
        peer = SBertBiEncoder(str(minilm_path()), batch_size=32, device="cpu")
        systems["pyterrier_dr SBertBiEncoder (batch 32)"] = peer.encode_docs
    return systems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", default="nfcorpus", choices=["nfcorpus", "vaswani"])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    texts = load_texts(args.collection, args.docs)
    ours = dense.BiEncoder(warn_truncation=False, batch_size=args.batch_size)
    systems = encoders(ours)
    reference_name = next(name for name in systems if name.startswith("sentence-transformers"))
    vectors, seconds = {}, {name: [] for name in systems}
    for encode in systems.values():
        encode(texts[:32])  # warm-up
    for _ in range(args.repeats):
        for name, encode in systems.items():
            started = time.perf_counter()
            vectors[name] = np.asarray(encode(texts))
            seconds[name].append(time.perf_counter() - started)

    ours.encode_docs(texts)
    stats = ours.last_stats
    print(f"machine: {describe_machine()}")
    print(
        f"{len(texts)} {args.collection} documents, {stats.tokens / stats.texts:.0f} tokens on average after "
        f"truncation to {ours.doc_length} ({stats.truncated} truncated); median of {args.repeats} alternating rounds"
    )
    baseline = statistics.median(seconds[reference_name])
    print("\n| encoder | docs/s | ratio to sentence-transformers | max abs difference to sentence-transformers |")
    print("|---|---|---|---|")
    for name in systems:
        median = statistics.median(seconds[name])
        difference = np.abs(vectors[name] - vectors[reference_name]).max()
        print(f"| {name} | {len(texts) / median:.1f} | {baseline / median:.2f}x | {difference:.1e} |")
    print("\nrounds (seconds):", {name: [round(value, 1) for value in values] for name, values in seconds.items()})


if __name__ == "__main__":
    main()
