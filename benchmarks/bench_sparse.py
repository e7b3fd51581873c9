"""Time per pair and peak memory of sparse-attention cross-encoders against dense attention, on this CPU.

Time: one fresh subprocess per length runs every variant once to warm up, then ``--repeats`` rounds in which each
variant runs once (in a rotating order), so that changes in the load of the shared machine hit all variants alike;
the median round is reported. Memory: one fresh subprocess per length and variant measures the rise of the peak
resident set over one forward pass, read from ``VmHWM`` after resetting it, with glibc's mmap threshold lowered so
that freed tensors leave the resident set at once.

Model: all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads) with a seeded one-logit head; beyond 512 tokens both the
dense and the sparse model use the same position table, linearly interpolated to 4096. Inputs: an NFCorpus test query
and NFCorpus documents concatenated and cut so that every pair has exactly ``length`` tokens; one batch of
``8192 // length`` pairs (at least 1) sharing the query, as when reranking one query's candidates.

Rows: ``dense`` is the Hugging Face model with its default SDPA attention on that batch (no padding, so no mask);
``dense+pad`` the same batch with one token fewer on its last pair, so that Hugging Face builds its padding mask
(the usual case when reranking documents of mixed lengths); ``sparse w=N`` the paper's pattern ([CLS] sees all,
the query only itself, documents [CLS], the query and N tokens each side) with the banded kernel; ``sparse w=all``
the same asymmetric pattern with the whole document as window; ``flex w=N`` the flex_attention kernel.

Usage::

    python benchmarks/bench_sparse.py --quick          # 512 and 4096 tokens, w=4 (a few minutes)
    python benchmarks/bench_sparse.py                  # 128/512/2048/4096 tokens, w in 1..64 (tens of minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PYTERRIER_SHALLOW_DATA", REPO.parent / "shared" / "data"))
TOKEN_BUDGET = 8192
EXTENDED = 4096


def _status(field: str) -> float:
    """A ``/proc/self/status`` field in MiB."""
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024


def _texts() -> tuple[str, str]:
    """One NFCorpus test query and a long text made of NFCorpus test documents."""
    with open(DATA / "nfcorpus" / "queries.beir-test.tsv", encoding="utf-8") as handle:
        query = handle.readline().rstrip("\n").split("\t", 1)[1]
    parts = []
    with open(DATA / "nfcorpus" / "test.docs", encoding="utf-8") as handle:
        for line, _ in zip(handle, range(60)):
            parts.append(line.rstrip("\n").split("\t", 1)[1])
    return query, " ".join(parts)


def _setup(length: int, threads: int):
    """The model, tokenizer and the tokenised batch of one input length."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from pyterrier_shallow._hf import minilm_path
    from pyterrier_shallow._pair_tokenizer import PairTokenizer
    from pyterrier_shallow.sparse.positions import extend_position_embeddings

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1).eval()
    if length > model.config.max_position_embeddings:
        extend_position_embeddings(model, EXTENDED)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    pairs = PairTokenizer(tokenizer, query_length=64, doc_length=None, max_length=length)
    query, text = _texts()
    count = max(1, TOKEN_BUDGET // length)
    encoded = pairs.encode([query] * count, [text] * count)
    return model, tokenizer, pairs, encoded, np.arange(count)


def _forward(variant: dict, model, tokenizer, pairs, encoded, indices):
    """A function running one forward pass of ``variant`` over the batch, and one for its warm-up."""
    import copy

    import numpy as np

    from pyterrier_shallow.sparse._segments import PairLayout, doc_tokens, query_tokens
    from pyterrier_shallow.sparse.model import SparseCrossEncoderModel
    from pyterrier_shallow.sparse.pattern import AttentionPattern

    kind = variant["kind"]
    if kind.startswith("dense"):
        if kind == "dense+pad":  # one token fewer on the last pair: Hugging Face then builds its padding mask
            encoded = copy.copy(encoded)
            encoded.pair_doc_length = encoded.pair_doc_length.copy()
            encoded.pair_doc_length[-1] -= 1
            encoded.lengths = encoded.lengths.copy()
            encoded.lengths[-1] -= 1
        inputs = pairs.collate(encoded, indices)

        def forward(rows: int | None = None):
            return model(**{name: tensor[:rows] for name, tensor in inputs.items()}).logits

        return forward, lambda: forward(1)  # the same code path on a small input
    layout = PairLayout.of(tokenizer)
    kernel = "flex" if kind == "flex" else "banded"
    sparse = SparseCrossEncoderModel(model, AttentionPattern(window=variant["window"]), kernel=kernel).eval()
    queries = query_tokens(encoded, np.arange(len(encoded.query_ids)), layout)
    docs = doc_tokens(encoded, indices, encoded.pair_query[indices], layout)

    def forward():
        return sparse.score(docs, queries)

    return forward, forward  # flex compiles for the exact shapes, so it warms up on the batch itself


def _time_worker(job: dict) -> dict:
    """Times every variant of one length, interleaved round by round so that load changes hit them all alike."""
    import torch

    model, tokenizer, pairs, encoded, indices = _setup(job["length"], job["threads"])
    runs = [_forward(variant, model, tokenizer, pairs, encoded, indices) for variant in job["variants"]]
    times = [[] for _ in runs]
    with torch.inference_mode():
        for _, warm_up in runs:
            warm_up()
        for round_ in range(job["repeats"]):
            order = list(range(len(runs)))
            order = order[round_ % len(order) :] + order[: round_ % len(order)]
            for index in order:
                start = time.perf_counter()
                runs[index][0]()
                times[index].append(time.perf_counter() - start)
    return {"seconds": [statistics.median(values) for values in times], "all": times, "pairs": len(indices)}


def _memory_worker(job: dict) -> dict:
    """The rise of the peak resident set over one forward pass of one variant."""
    import torch

    model, tokenizer, pairs, encoded, indices = _setup(job["length"], job["threads"])
    forward, warm_up = _forward(job["variant"], model, tokenizer, pairs, encoded, indices)
    with torch.inference_mode():
        warm_up()
        Path("/proc/self/clear_refs").write_text("5")
        before = _status("VmRSS")
        forward()
        return {"peak_mib": _status("VmHWM") - before}


def _run(job: dict, *, memory: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if memory:  # freed tensors leave the resident set at once
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    result = subprocess.run(
        [sys.executable, __file__, "--memory-worker" if memory else "--time-worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"{job} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _machine(threads: int) -> str:
    import torch

    cpu = platform.processor() or "cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    with open("/proc/meminfo") as handle:
        total = int(handle.readline().split()[1]) / 1024**2
    return (
        f"{cpu}, {os.cpu_count()} vCPUs, {total:.0f} GiB RAM, {platform.system()} {platform.machine()}, "
        f"torch {torch.__version__}, {threads} thread(s) per run"
    )


def _variants(args) -> list[dict]:
    variants = [{"kind": "dense", "window": None}, {"kind": "dense+pad", "window": None}]
    variants += [{"kind": "sparse", "window": window} for window in args.windows]
    if args.full_window:
        variants.append({"kind": "sparse", "window": None})
    variants += [{"kind": "flex", "window": window} for window in args.flex]
    return variants


def _label(variant: dict) -> str:
    if variant["kind"].startswith("dense"):
        return variant["kind"]
    window = "all" if variant["window"] is None else variant["window"]
    return f"{variant['kind']} w={window}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="512 and 4096 tokens, w=4, three rounds")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048, 4096])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
    parser.add_argument("--flex", type=int, nargs="*", default=[4], help="windows to run with the flex kernel")
    parser.add_argument("--no-full-window", dest="full_window", action="store_false")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (the median is reported)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--time-worker", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_worker or args.memory_worker:
        worker = _time_worker if args.time_worker else _memory_worker
        print(json.dumps(worker(json.loads(args.time_worker or args.memory_worker))))
        return
    if args.quick:
        args.lengths, args.windows, args.flex, args.full_window, args.repeats = [512, 4096], [4], [], False, 3
    machine = _machine(args.threads)
    print(f"machine: {machine}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (the machine is shared: figures are noisy)", flush=True)
    variants, rows = _variants(args), []
    for length in args.lengths:
        job = {"length": length, "threads": args.threads}
        timing = _run({**job, "variants": variants, "repeats": args.repeats}, memory=False)
        for variant, seconds, runs in zip(variants, timing["seconds"], timing["all"]):
            peak = _run({**job, "variant": variant}, memory=True)["peak_mib"]
            row = {**job, **variant, "label": _label(variant), "seconds": seconds, "runs": runs}
            rows.append({**row, "pairs": timing["pairs"], "peak_mib": peak})
            print(
                f"  {length:>5} tokens  {row['label']:<12} {1000 * seconds / timing['pairs']:9.1f} ms/pair  "
                f"peak +{peak:7.1f} MiB  ({timing['pairs']} pairs/batch)",
                flush=True,
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print()
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=1, default=str))


def _table(rows: list[dict]) -> str:
    """A markdown table: time per pair and peak memory, each also relative to both dense rows at the same length."""
    lines = [
        "| tokens | attention | ms / pair | speed vs dense / dense+pad | peak MiB | memory vs dense / dense+pad |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    bases = {(row["length"], row["kind"]): row for row in rows if row["kind"].startswith("dense")}
    for row in rows:
        speeds, memories = [], []
        for kind in ("dense", "dense+pad"):
            base = bases.get((row["length"], kind))
            speeds.append(f"{base['seconds'] / row['seconds']:.2f}x" if base else "-")
            memories.append(
                f"{100 * row['peak_mib'] / base['peak_mib']:.0f}%" if base and base["peak_mib"] > 0 else "-"
            )
        per_pair = 1000 * row["seconds"] / row["pairs"]
        lines.append(
            f"| {row['length']} | {row['label']} | {per_pair:.1f} | {' / '.join(speeds)} | {row['peak_mib']:.1f} "
            f"| {' / '.join(memories)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
