"""Trains an anchored gated cross-encoder from an ensemble teacher, with one training collection left out to validate.

The teacher is a mix of per-query z-scores of the components ``benchmarks/anchor_components.py`` cached over BM25's
top 100 (BM25, the cosine, the 6-layer cross-encoder...), with the weights ``benchmarks/anchor_selection.py`` chose
by leaving one training collection out at a time. The student starts from a gated cross-encoder folder (a shipped
delta or a full checkpoint) and learns, with its weights, the anchor ``a * z(BM25) + b * z(model)``::

    python benchmarks/train_anchored.py --work runs/anchor --student pyterrier_shallow/models/cross-encoder \
        --teacher bm25=1,cos=1,ce6=1 --train nfcorpus-dev cisi --validate cranfield --out runs/anchored-l3

The validation collection takes no part in training: its nDCG@10 (of the anchored scores) chooses the step kept.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anchor_components import collection_parts

from pyterrier_shallow.anchor import per_query_zscores
from pyterrier_shallow.gated import is_delta, load_delta, load_gated
from pyterrier_shallow.train import DistillationSource, MixedSource, RerankValidation, TrainConfig, make_loss, train


def parse_teacher(text: str) -> dict[str, float]:
    """``bm25=1,cos=1,ce6=1`` -> weights by component."""
    return {name: float(weight) for name, weight in (part.split("=") for part in text.split(","))}


def scored_candidates(work: Path, spec: str, teacher: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """BM25's candidates of a collection with text, BM25's ``score`` and the teacher's ``teacher_score``."""
    folder = work / spec.replace(":", "-")
    frame = pd.read_pickle(folder / "bm25.pkl")
    teacher_score = np.zeros(len(frame))
    for name, weight in teacher.items():
        scores = frame[["qid", "docno"]].merge(pd.read_pickle(folder / f"{name}.pkl"), on=["qid", "docno"],
                                               how="left", validate="one_to_one")["score"]
        teacher_score += weight * per_query_zscores(frame["qid"].to_numpy(), scores.to_numpy())
    _, qrels, documents = collection_parts(spec.replace("-", ":", 1) if spec.startswith("nfcorpus") else spec)
    texts = {doc["docno"]: doc["text"] for doc in documents}
    frame = frame.assign(text=frame["docno"].map(texts), teacher_score=teacher_score.astype(np.float32))
    frame = frame[frame["text"].fillna("").str.strip() != ""].reset_index(drop=True)
    return frame, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/anchor"))
    parser.add_argument("--student", required=True, help="a gated cross-encoder folder (shipped delta or checkpoint)")
    parser.add_argument("--teacher", type=parse_teacher, required=True, help="component=weight,...")
    parser.add_argument("--train", nargs="+", required=True, help="training collections (as in --work)")
    parser.add_argument("--validate", required=True, help="the collection left out, to choose the step")
    parser.add_argument("--val-queries", type=int, default=60)
    parser.add_argument("--val-depth", type=int, default=50)
    parser.add_argument("--anchor", default="1,1", help="initial weights FIRST,MODEL (default: 1,1)")
    parser.add_argument("--loss", default="soft-label")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--queries-per-step", type=int, default=4)
    parser.add_argument("--negatives", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--head-lr", type=float, default=2e-2)
    parser.add_argument("--scale-lr", type=float, default=1e-2)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--cross-layers", type=int, default=None,
                        help="only the top N layers read the query (their document states below are precomputable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sources = []
    for spec in args.train:
        frame, _ = scored_candidates(args.work, spec, args.teacher)
        sources.append(DistillationSource(frame, name=f"distil:{spec}"))
    source = MixedSource(sources) if len(sources) > 1 else sources[0]

    frame, qrels = scored_candidates(args.work, args.validate, {})  # validation needs no teacher
    qids = sorted(frame["qid"].unique())[: args.val_queries]
    candidates = frame[frame["qid"].isin(qids) & (frame["rank"] < args.val_depth)]
    validation = RerankValidation(candidates, qrels, name=args.validate, depth=args.val_depth)
    student = load_delta(args.student) if is_delta(args.student) else args.student
    if args.cross_layers is not None:
        if not isinstance(student, tuple):
            student = load_gated(student)
        student[0].confine_cross_attention(args.cross_layers)
    first_stage, model = (float(value) for value in args.anchor.split(","))
    config = TrainConfig(
        steps=args.steps, queries_per_step=args.queries_per_step, num_negatives=args.negatives, lr=args.lr,
        head_lr=args.head_lr, scale_lr=args.scale_lr, warmup_steps=min(30, args.steps), query_length=32,
        doc_length=128, eval_every=args.eval_every, freeze_embeddings=True, anchor=(first_stage, model),
    )
    result = train(student, source, args.out, loss=make_loss(args.loss), config=config, validation=validation,
                   device="cpu", command=f"python benchmarks/train_anchored.py {shlex.join(sys.argv[1:])}")
    print(f"saved {result.output_dir} (step {result.best_step} of {result.steps})")
    for point in result.curve:
        print(f"  step {point['step']:>5}  nDCG@10 {point['nDCG@10']:.4f}")


if __name__ == "__main__":
    main()
