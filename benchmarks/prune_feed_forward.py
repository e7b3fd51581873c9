"""Prunes the feed-forward units of a gated cross-encoder's layers that read the query, keeping the most important.

A unit's importance is its mean absolute activation over real (query, candidate) pairs of the training collections
(BM25's top candidates, as ``benchmarks/anchor_components.py`` cached them), times the norm of its output weights.
With ``--cross-layers N`` the model first reads the query in its top N layers only (the gates below are closed), so
that its lower layers can be precomputed (``pyterrier_shallow.precomputed``). The pruned model is saved as an fp16
delta with the source's training card, a ``derived`` section added (what was done, by which command), to be used as
it is or trained on (``benchmarks/train_anchored.py --student``)::

    python benchmarks/prune_feed_forward.py --model pyterrier_shallow/models/cross-encoder --cross-layers 1 \
        --keep 384 --collections nfcorpus-dev cisi --out runs/pruned-l3-384
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch
from anchor_components import collection_parts

from pyterrier_shallow import CrossEncoder
from pyterrier_shallow.gated import load_gated, save_delta


def candidate_pairs(work: Path, spec: str, queries: int, depth: int) -> pd.DataFrame:
    """The first ``queries`` queries' top ``depth`` BM25 candidates of a cached collection, with text."""
    frame = pd.read_pickle(work / spec / "bm25.pkl")
    _, _, documents = collection_parts(spec.replace("-", ":", 1) if spec.startswith("nfcorpus") else spec)
    texts = {document["docno"]: document["text"] for document in documents}
    chosen = sorted(frame["qid"].unique())[:queries]
    frame = frame[frame["qid"].isin(chosen) & (frame["rank"] < depth)]
    return frame.assign(text=frame["docno"].map(texts)).dropna(subset=["text"])


def unit_importance(model, tokenizer, layer: int, pairs: pd.DataFrame) -> torch.Tensor:
    """Mean absolute activation of each feed-forward unit of ``layer`` times its output weights' norm."""
    block = model.bert.encoder.layer[layer]
    totals = torch.zeros(block.intermediate.dense.out_features)
    count = [0]

    def record(_module, _inputs, output):
        flat = output.detach().reshape(-1, output.shape[-1])
        totals.add_(flat.abs().sum(0))
        count[0] += flat.shape[0]

    handle = block.intermediate.register_forward_hook(record)
    try:
        CrossEncoder((model, tokenizer), anchor=False, query_length=32, doc_length=128, warn_truncation=False)(pairs)
    finally:
        handle.remove()
    return totals / max(count[0], 1) * block.output.dense.weight.detach().norm(dim=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a gated cross-encoder folder")
    parser.add_argument("--keep", type=int, required=True, help="feed-forward units kept in each pruned layer")
    parser.add_argument("--cross-layers", type=int, default=None,
                        help="first confine reading the query to the top N layers (closing the gates below)")
    parser.add_argument("--layers", type=int, nargs="*", default=None,
                        help="layers to prune (default: those that read the query)")
    parser.add_argument("--work", type=Path, default=Path("runs/anchor"))
    parser.add_argument("--collections", nargs="+", default=["nfcorpus-dev", "cisi"])
    parser.add_argument("--queries", type=int, default=30, help="queries a collection (default: 30)")
    parser.add_argument("--depth", type=int, default=20, help="candidates a query (default: 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_gated(args.model)
    if args.cross_layers is not None:
        model.confine_cross_attention(args.cross_layers)
    first = model.first_query_layer()
    layers = args.layers if args.layers is not None else list(range(first, model.config.num_hidden_layers))
    pairs = pd.concat([candidate_pairs(args.work, spec, args.queries, args.depth) for spec in args.collections])
    pruned = {}
    for layer in layers:
        importance = unit_importance(model, tokenizer, layer, pairs)
        keep = torch.argsort(importance, descending=True)[: args.keep].sort().values
        share = float(importance[keep].sum() / importance.sum())
        print(f"layer {layer}: keeping {args.keep} of {len(importance)} units, {share:.1%} of the importance")
        model.prune_feed_forward(layer, keep)
        pruned[str(layer)] = {"kept": args.keep, "of": len(importance), "importance_kept": round(share, 4)}
    source = Path(args.model)
    card = json.loads((source / "training_card.json").read_text()) if (source / "training_card.json").is_file() else {}
    card["derived"] = {
        "from": str(args.model), "cross_layers": args.cross_layers, "pruned_feed_forward": pruned,
        "importance_measured_on": {"collections": args.collections, "queries": args.queries, "depth": args.depth,
                                   "pairs": len(pairs)},
        "further_training": None,
        "command": f"python benchmarks/prune_feed_forward.py {shlex.join(sys.argv[1:])}",
    }
    extra = {"training_card.json": (json.dumps(card, indent=2) + "\n").encode("utf-8")}
    extra.update({name: (source / name).read_bytes() for name in ("anchor.json",) if (source / name).is_file()})
    save_delta(model, tokenizer, args.out, extra_files=extra)
    print(f"saved {args.out} ({len(pairs)} pairs measured, feed-forward sizes {model.config.feed_forward_sizes})")


if __name__ == "__main__":
    main()
