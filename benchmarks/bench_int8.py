"""Int8 against float32 on CPU: throughput (ours, sentence-transformers, ONNX Runtime) and agreement on real queries.

Throughput: the same real NFCorpus (query, document) pairs scored by cross-encoders cut from all-MiniLM-L6-v2
(2 and 6 layers; the head is untrained, which does not change the cost) in one process, runs alternating so that
all scorers see the same machine state, at each torch thread count asked for:
- pyterrier_shallow.CrossEncoder in float32 and in int8 (torch dynamic quantisation of the encoder's Linear layers);
- sentence-transformers' CrossEncoder (float32) on the same checkpoint;
- ONNX Runtime in float32 and int8 (its own dynamic quantisation), fed by our batching, when onnxruntime and onnx
  are installed.
Agreement: float32 against int8 on real queries with a trained model (nDCG@10 of each, and the mean per-query
Kendall tau between their rankings of BM25's top candidates). By default the model is all-MiniLM-L6-v2 used as a
bi-encoder scorer of (query, document) pairs (no trained cross-encoder is needed); ``--agreement-model`` names a
cross-encoder checkpoint instead.

    python benchmarks/bench_int8.py --pairs 200 --threads 1,2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyterrier as pt
import torch
from _machine import describe_machine
from bench_cross_encoder import build_checkpoint, load_pairs
from scipy.stats import kendalltau
from sentence_transformers import CrossEncoder as ReferenceCrossEncoder

import pyterrier_shallow as pts
from pyterrier_shallow._batching import length_sorted_batches
from pyterrier_shallow._quantize import quantize_for_cpu
from pyterrier_shallow.bm25 import bm25


def onnx_runners(ce: pts.CrossEncoder, directory: Path, threads: int) -> dict:
    """ONNX Runtime sessions (float32 and int8) of the cross-encoder's model, or none without onnxruntime/onnx."""
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return {}
    ce.network  # noqa: B018 - loads the model and its pair tokenizer
    sample = ce._pairs.collate(ce._pairs.encode(["a query"] * 2, ["a document", "another document"]), np.arange(2))
    directory.mkdir(parents=True, exist_ok=True)
    full, small = directory / "model.onnx", directory / "model.int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ce.network,
            (),
            str(full),
            kwargs=dict(sample),
            input_names=list(sample),
            output_names=["logits"],
            dynamic_axes={**{name: {0: "batch", 1: "length"} for name in sample}, "logits": {0: "batch"}},
            dynamo=False,
            opset_version=17,
        )
        quantize_dynamic(str(full), str(small), weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {
        "ONNX Runtime float32": onnxruntime.InferenceSession(str(full), options, providers=["CPUExecutionProvider"]),
        "ONNX Runtime int8": onnxruntime.InferenceSession(str(small), options, providers=["CPUExecutionProvider"]),
    }

    def scorer(session):
        def score(queries, texts):
            encoded = ce._pairs.encode(queries, texts)
            scores = np.empty(len(queries), dtype=np.float32)
            for batch in length_sorted_batches(encoded.lengths, batch_size=ce.batch_size, token_budget=ce.token_budget):
                feed = {name: tensor.numpy() for name, tensor in ce._pairs.collate(encoded, batch).items()}
                scores[batch] = session.run(None, feed)[0][:, 0]
            return scores

        return score

    return {name: scorer(session) for name, session in sessions.items()}


def throughput(args, queries, texts, layers: int, threads: int, directory: Path) -> list[str]:
    torch.set_num_threads(threads)
    checkpoint = build_checkpoint(directory / f"l{layers}", layers)
    options = {"max_length": args.max_length, "batch_size": args.batch_size, "warn_truncation": False}
    full = pts.CrossEncoder(checkpoint, **options)
    int8 = pts.CrossEncoder(checkpoint, precision="int8", **options)
    reference = ReferenceCrossEncoder(str(checkpoint), max_length=args.max_length, activation_fn=torch.nn.Identity())
    runners = {
        "sentence-transformers CrossEncoder (float32)": lambda q, t: reference.predict(
            list(zip(q, t)), batch_size=args.batch_size, show_progress_bar=False
        ),
        "pyterrier_shallow.CrossEncoder float32": full.score_pairs,
        "pyterrier_shallow.CrossEncoder int8": int8.score_pairs,
    }
    runners.update(onnx_runners(full, directory / f"onnx-l{layers}", threads) if args.onnx else {})
    for run in runners.values():  # warm-up
        run(queries[:32], texts[:32])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(args.repeats):
        names = list(runners) if repeat % 2 == 0 else list(reversed(runners))  # alternate the order
        for name in names:
            start = time.perf_counter()
            runners[name](queries, texts)
            times[name].append(time.perf_counter() - start)
    tokens = full.last_stats.tokens if full.last_stats.pairs else 0
    base = statistics.median(times["pyterrier_shallow.CrossEncoder float32"])
    reference_time = statistics.median(times["sentence-transformers CrossEncoder (float32)"])
    rows = []
    for name in runners:
        seconds = statistics.median(times[name])
        rows.append(
            f"| {layers} | {threads} | {name} | {len(queries) / seconds:.1f} | {tokens / seconds:.0f} | "
            f"{base / seconds:.2f}x | {reference_time / seconds:.2f}x |"
        )
    return rows


def agreement(args, index_dir: Path) -> list[str]:
    torch.set_num_threads(max(args.thread_counts))
    dataset = pts.datasets.vaswani()
    topics, qrels = dataset.get_topics(), dataset.get_qrels()
    if args.agreement_queries:
        topics = topics.head(args.agreement_queries)
    qrels = qrels[qrels["qid"].isin(topics["qid"])]
    candidates = (bm25(dataset, index_dir, num_results=args.depth) >> pts.TextLoader(dataset))(topics)
    if args.agreement_model:
        full = pts.CrossEncoder(args.agreement_model, warn_truncation=False)
        int8 = pts.CrossEncoder(args.agreement_model, precision="int8", warn_truncation=False)
        scorers, label = {"float32": full, "int8": int8}, f"cross-encoder {args.agreement_model}"
    else:
        from pyterrier_shallow.dense import BiEncoder

        full, int8 = BiEncoder(), BiEncoder()
        int8.network  # noqa: B018 - loads it
        int8._network = quantize_for_cpu(int8._network, "int8")
        scorers = {"float32": full.text_scorer(), "int8": int8.text_scorer()}
        label = "all-MiniLM-L6-v2 bi-encoder scorer (trained, 6 layers)"
    runs = {name: scorer(candidates) for name, scorer in scorers.items()}
    measure = pt.measures.nDCG @ 10
    ndcg = {name: pt.Evaluate(run, qrels, metrics=[measure])[str(measure)] for name, run in runs.items()}
    merged = runs["float32"].merge(runs["int8"], on=["qid", "docno"], suffixes=("_full", "_int8"))
    taus = [kendalltau(rows["score_full"], rows["score_int8"]).statistic for _, rows in merged.groupby("qid")]
    bm25_ndcg = pt.Evaluate(candidates, qrels, metrics=[measure])[str(measure)]
    return [
        f"agreement: {label}, reranking BM25's top {args.depth} on {topics['qid'].nunique()} Vaswani queries",
        "| | nDCG@10 |",
        "|---|---|",
        f"| BM25 | {bm25_ndcg:.4f} |",
        f"| float32 | {ndcg['float32']:.4f} |",
        f"| int8 | {ndcg['int8']:.4f} |",
        f"| difference (int8 - float32) | {ndcg['int8'] - ndcg['float32']:+.4f} |",
        f"mean per-query Kendall tau float32 vs int8: {np.nanmean(taus):.4f} (min {np.nanmin(taus):.4f})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--layers", default="2,6")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-onnx", dest="onnx", action="store_false")
    parser.add_argument("--agreement-model", default=None)
    parser.add_argument("--agreement-queries", type=int, default=None)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    args.thread_counts = [int(value) for value in args.threads.split(",")]

    queries, texts = load_pairs(args.data, args.pairs)
    print(f"machine: {describe_machine()}")
    print(
        f"{len(queries)} NFCorpus pairs, max_length {args.max_length}, batch {args.batch_size}, median of "
        f"{args.repeats} alternating runs; ratios are within one run"
    )
    print("| layers | threads | scorer | pairs/s | tokens/s | vs ours float32 | vs sentence-transformers |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for layers in [int(value) for value in args.layers.split(",")]:
            for threads in args.thread_counts:
                for row in throughput(args, queries, texts, layers, threads, Path(tmp)):
                    print(row, flush=True)
        for line in agreement(args, Path(tmp) / "bm25"):
            print(line, flush=True)


if __name__ == "__main__":
    main()
