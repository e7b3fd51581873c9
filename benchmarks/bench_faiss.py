"""FAISS index types compared: build time, bytes a document, per-query latency, recall@100 against exact search, and
nDCG@10; then the same measured at growing scale and projected to MS MARCO passage (8.8M passages).

Real part: all-MiniLM-L6-v2 vectors of Vaswani (11,429 documents, 93 queries). Scale part: N vectors made from the
real ones (a random real vector plus Gaussian noise of norm 0.5, re-normalised: about 0.89 cosine to its source),
streamed through the indexer in chunks, queried with the real query vectors. Latency is one query at a time
(``index.search`` on a single vector for the top 100, after a warm-up), median and 95th percentile over all
queries; HNSW's ef_search is at least k.

    python benchmarks/bench_faiss.py --work /tmp/pts-dense-bench --scale 50000 100000 200000
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyterrier as pt
from _machine import describe_machine

import pyterrier_shallow.dense as dense
from pyterrier_shallow import datasets
from pyterrier_shallow.dense._faiss_types import IndexSpec, search_parameters, train_index

K = 100  # results a query: a first stage feeding a re-ranker
MSMARCO_PASSAGES = 8_841_823
MSMARCO_TOKENS_A_PASSAGE = 78  # assumed (about 58 words a passage), not measured here: no MS MARCO text offline
CONFIGS = {  # label: (index type, build options, search options to sweep)
    "flat": ("flat", {}, [{}]),
    "hnsw": (
        "hnsw",
        {"hnsw_m": 32, "ef_construction": 200},
        [{"ef_search": 100}, {"ef_search": 200}, {"ef_search": 400}],
    ),
    "ivfpq48": ("ivfpq", {"pq_m": 48}, [{"nprobe": 8}, {"nprobe": 32}, {"nprobe": 128}]),
    "ivfpq96": ("ivfpq", {"pq_m": 96}, [{"nprobe": 8}, {"nprobe": 32}, {"nprobe": 128}]),
}
_RSS_PROBE = """
import sys, numpy as np, faiss
def rss():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS:"))
before = rss()
index = faiss.read_index(sys.argv[1] + "/index.faiss")
docnos = np.array(np.load(sys.argv[1] + "/docnos.npy"))
print(rss() - before)
"""


def resident_bytes(index: dense.FaissIndex) -> int:
    """The memory a fresh process gains by loading the index and its docnos."""
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(index.path)], capture_output=True, text=True)
    return int(result.stdout.strip())


def disk_bytes(index: dense.FaissIndex) -> int:
    return sum(path.stat().st_size for path in Path(index.path).iterdir())


def build(path: Path, documents, index_type: str, options: dict) -> tuple[dense.FaissIndex, float]:
    started = time.perf_counter()
    built = dense.FaissIndex(path).indexer(index_type=index_type, overwrite=True, verbose=False, **options)
    built = built.index(documents)
    return built, time.perf_counter() - started


def latencies(index: dense.FaissIndex, queries: np.ndarray, k: int, search: dict) -> tuple[list[float], float]:
    """Seconds a query searched alone on one thread, and seconds a query when all are searched at once."""
    faiss_index = index.faiss_index()
    ef_search = max(search["ef_search"], k) if "ef_search" in search else None
    params = search_parameters(faiss_index, ef_search=ef_search, nprobe=search.get("nprobe"))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    faiss_index.search(queries[:5], k, params=params)  # warm-up
    timings = []
    for vector in queries:
        started = time.perf_counter()
        faiss_index.search(vector[None], k, params=params)
        timings.append(time.perf_counter() - started)
    faiss.omp_set_num_threads(threads)
    started = time.perf_counter()
    faiss_index.search(queries, k, params=params)
    return timings, (time.perf_counter() - started) / len(queries)


def recall(index: dense.FaissIndex, exact: np.ndarray, queries: np.ndarray, search: dict, k: int = 100) -> float:
    faiss_index = index.faiss_index()
    params = search_parameters(faiss_index, ef_search=search.get("ef_search"), nprobe=search.get("nprobe"))
    _, ids = faiss_index.search(queries, k, params=params)
    return float(np.mean([len(set(row) & set(truth)) / k for row, truth in zip(ids, exact)]))


def real_part(work: Path, model: dense.BiEncoder) -> tuple[np.ndarray, np.ndarray]:
    dataset = datasets.vaswani()
    source = dense.FaissIndex(work / "vaswani.faiss")
    if not source.built():
        source.indexer(model).index(dataset.get_corpus_iter())
    vectors = source.faiss_index().reconstruct_n(0, len(source))
    docnos = [docno.decode() for docno in source.docnos()]
    topics, qrels = dataset.get_topics(), dataset.get_qrels()
    queries = model.encode_queries(topics["query"].tolist())
    exact = source.faiss_index().search(queries, K)[1]
    documents = [{"docno": d, "doc_vec": v} for d, v in zip(docnos, vectors)]
    print(f"\n## Vaswani (11,429 real documents, 93 real queries), k = {K}\n")
    print(
        "| index | build s | bytes/doc on disk | RSS bytes/doc | search | median ms (1 query, 1 thread) | p95 ms "
        "| ms/query (93 at once) | recall@100 | nDCG@10 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, (index_type, options, searches) in CONFIGS.items():
        index, seconds = build(work / f"bench-{label}.faiss", documents, index_type, options)
        resident = resident_bytes(index)
        for search in searches:
            timings, batched = latencies(index, queries, K, search)
            retriever = index.retriever(num_results=K, **search)
            ndcg = pt.Experiment(
                [retriever], topics.assign(query_vec=list(queries)), qrels, [pt.measures.nDCG @ 10]
            ).iloc[0]["nDCG@10"]
            print(
                f"| {label} | {seconds:.1f} | {disk_bytes(index) / len(index):.0f} | {resident / len(index):.0f} "
                f"| {_describe(search)} | {1000 * statistics.median(timings):.2f} "
                f"| {1000 * np.percentile(timings, 95):.2f} | {1000 * batched:.2f} "
                f"| {recall(index, exact, queries, search):.3f} | {ndcg:.3f} |"
            )
    return vectors, queries


def _describe(search: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in search.items()) or "exact"


def synthetic(vectors: np.ndarray, count: int, *, seed: int, chunk: int = 20_000):
    generator = np.random.default_rng(seed)
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        base = vectors[generator.integers(0, len(vectors), size)]
        noisy = base + generator.normal(0, 0.5 / math.sqrt(vectors.shape[1]), base.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        for offset, vector in enumerate(noisy):
            yield {"docno": f"s{start + offset}", "doc_vec": vector}


def scale_part(work: Path, vectors: np.ndarray, queries: np.ndarray, sizes: list[int]) -> pd.DataFrame:
    print(f"\n## Scale: vectors made from the real ones, real queries, k = {K}\n")
    print(
        "| index | docs | build s | bytes/doc on disk | search | median ms (1 query, 1 thread) | p95 ms | recall@100 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    measured = []
    for size in sizes:
        exact = None
        for label, (index_type, options, searches) in CONFIGS.items():
            extra = {"train_size": min(size, 100_000)} if index_type == "ivfpq" else {}
            documents = synthetic(vectors, size, seed=size)
            index, seconds = build(work / f"scale-{label}.faiss", documents, index_type, options | extra)
            if exact is None:
                exact = index.faiss_index().search(queries, K)[1]
            search = searches[len(searches) // 2]
            timings, _ = latencies(index, queries, K, search)
            train_s = None
            if index_type == "ivfpq" and size == max(sizes):  # training alone, for the projection
                sample = np.stack(
                    [doc["doc_vec"] for doc, _ in zip(synthetic(vectors, size, seed=size), range(100_000))]
                )
                started = time.perf_counter()
                train_index(IndexSpec("ivfpq", **options, train_size=len(sample)), sample)
                train_s = time.perf_counter() - started
            row = {
                "index": label,
                "docs": size,
                "build_s": seconds,
                "train_s": train_s,
                "train_size": index.meta["index_options"].get("train_size"),
                "bytes_per_doc": disk_bytes(index) / len(index),
                "median_ms": 1000 * statistics.median(timings),
                "nlist": index.meta["index_options"].get("nlist"),
                "search": _describe(search),
            }
            measured.append(row)
            print(
                f"| {label} | {size} | {seconds:.1f} | {row['bytes_per_doc']:.0f} | {row['search']} "
                f"| {row['median_ms']:.2f} | {1000 * np.percentile(timings, 95):.2f} "
                f"| {recall(index, exact, queries, search):.3f} |"
            )
    return pd.DataFrame(measured)


def ivfpq_training_costs(vectors: np.ndarray, nlist: int, pq_m: int) -> dict:
    """Measures, at MS MARCO's nlist, one k-means iteration, PQ training, and assigning a vector to its list."""
    dimension = vectors.shape[1]
    sample = np.stack([doc["doc_vec"] for doc in synthetic(vectors, 65_536, seed=7)])
    kmeans = faiss.Kmeans(dimension, nlist, niter=1, seed=1, spherical=False, max_points_per_centroid=1 << 30)
    kmeans.cp.min_points_per_centroid = 1
    started = time.perf_counter()
    kmeans.train(sample)
    coarse_train_s = (time.perf_counter() - started) * 25 * (39 * nlist) / len(sample)  # 25 iterations
    quantizer = faiss.ProductQuantizer(dimension, pq_m, 8)
    started = time.perf_counter()
    quantizer.train(sample)
    pq_train_s = time.perf_counter() - started
    centroids = faiss.IndexFlatIP(dimension)
    centroids.add(kmeans.centroids)
    started = time.perf_counter()
    centroids.search(sample[:16_384], 1)
    assign_s = (time.perf_counter() - started) / 16_384
    return {"coarse_train_s": coarse_train_s, "pq_train_s": pq_train_s, "assign_s": assign_s}


def project(measured: pd.DataFrame, tokens_per_second: float, ivfpq_costs: dict) -> None:
    """Extrapolates the measured runs of each index type to MS MARCO passage."""
    n = MSMARCO_PASSAGES
    encode_hours = n * MSMARCO_TOKENS_A_PASSAGE / tokens_per_second / 3600
    print(f"\n## Projection to MS MARCO passage ({n:,} passages)\n")
    print(
        f"Encoding: {tokens_per_second:.0f} tokens/s measured here -> {encode_hours:.0f} h on this CPU for "
        f"{n:,} passages of about {MSMARCO_TOKENS_A_PASSAGE} tokens (assumed), whichever the index type.\n"
    )
    print(f"| index | search | size on disk | build time after encoding | median latency, k={K}, 1 thread | basis |")
    print("|---|---|---|---|---|---|")
    flat = measured[measured["index"] == "flat"].sort_values("docs").iloc[-1]
    ms_a_doc = flat["median_ms"] / flat["docs"]  # one exhaustive inner product, per document
    for label, rows in measured.groupby("index", sort=False):
        rows = rows.sort_values("docs")
        largest = rows.iloc[-1]
        size_gb = largest["bytes_per_doc"] * n / 1e9
        if label == "flat":
            build_h = largest["build_s"] / largest["docs"] * n / 3600
            latency = ms_a_doc * n
            basis = "linear in documents (exhaustive scan)"
        elif label == "hnsw":
            build_h = largest["build_s"] / (largest["docs"] * math.log(largest["docs"])) * n * math.log(n) / 3600
            slope, intercept = np.polyfit(np.log(rows["docs"]), rows["median_ms"], 1)
            latency = intercept + max(slope, 0.0) * math.log(n)
            basis = "build ~ n log n; latency fitted as a + b log n over the measured sizes"
        else:
            nlist, costs = ivfpq_costs[label]
            add_s = (largest["build_s"] - largest["train_s"]) / largest["docs"] + costs["assign_s"]
            build_h = (costs["coarse_train_s"] + costs["pq_train_s"] + n * add_s) / 3600
            coarse_ms = ms_a_doc * largest["nlist"]
            scan_ms = max(largest["median_ms"] - coarse_ms, 0.0) * (n / nlist) / (largest["docs"] / largest["nlist"])
            latency = ms_a_doc * nlist + scan_ms
            basis = (
                f"nlist = 4 sqrt(n) = {nlist}: k-means on {39 * nlist:,} vectors "
                f"({costs['coarse_train_s'] / 3600:.1f} h), PQ training ({costs['pq_train_s']:.0f} s), adding "
                f"{1000 * add_s:.2f} ms a vector; latency = {nlist} centroids + nprobe n / nlist codes"
            )
        print(f"| {label} | {largest['search']} | {size_gb:.1f} GB | {build_h:.1f} h | {latency:.1f} ms | {basis} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pts-dense-bench"))
    parser.add_argument("--scale", type=int, nargs="*", default=[50_000, 100_000, 200_000])
    parser.add_argument("--encode-docs", type=int, default=500)
    parser.add_argument("--skip-real", action="store_true", help="only the scale part and the projection")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {describe_machine()}")
    model = dense.BiEncoder(warn_truncation=False)
    if args.skip_real:
        source = dense.FaissIndex(args.work / "vaswani.faiss")
        if not source.built():
            source.indexer(model).index(datasets.vaswani().get_corpus_iter())
        vectors = source.faiss_index().reconstruct_n(0, len(source))
        queries = model.encode_queries(datasets.vaswani().get_topics()["query"].tolist())
    else:
        vectors, queries = real_part(args.work, model)
    if args.scale:
        measured = scale_part(args.work, vectors, queries, args.scale)
        texts = [doc["text"] for doc, _ in zip(datasets.vaswani().get_corpus_iter(), range(args.encode_docs))]
        started = time.perf_counter()
        model.encode_docs(texts)
        tokens_per_second = model.last_stats.tokens / (time.perf_counter() - started)
        nlist = round(4 * math.sqrt(MSMARCO_PASSAGES))
        ivfpq_costs = {
            label: (nlist, ivfpq_training_costs(vectors, nlist, options["pq_m"]))
            for label, (index_type, options, _) in CONFIGS.items()
            if index_type == "ivfpq"
        }
        project(measured, tokens_per_second, ivfpq_costs)


if __name__ == "__main__":
    main()
