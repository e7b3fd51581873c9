"""Chooses anchor weights by leaving one training collection out at a time, then reports the held-out figures once.

Reads what ``benchmarks/anchor_components.py`` wrote (BM25's top candidates and each component's scores), mixes
components as per-query z-scores, ``sum_i w_i * z(component_i)``, and measures nDCG@10::

    python benchmarks/anchor_selection.py --work runs/anchor --out docs/anchor_selection.json

For every mix family (BM25 + one model, with the model's weight on a grid; or several components on a grid), the
weights are chosen on the training collections: for each one left out, the weights with the best mean over the
others are measured on it (the leave-one-domain-out figure); the weights that ship are those with the best mean over
all of them. Only then are the held-out collections scored, with those weights, beside BM25 and the untrained
equal-weight hybrid of BM25 and the cosine.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
from _machine import describe_machine

from pyterrier_shallow.anchor import per_query_zscores

TRAINING = ["nfcorpus-dev", "cranfield", "cisi"]
HELD_OUT = ["vaswani", "nfcorpus-test"]
MODEL_WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
GRID = [0.0, 0.5, 1.0, 2.0]


def load(folder: Path, components: list[str], first: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first stage's candidates with one z-scored column per component (the first stage's too), and the qrels."""
    frame = pd.read_pickle(folder / f"{first}.pkl")[["qid", "docno", "score"]].rename(columns={"score": first})
    for name in components:
        scores = pd.read_pickle(folder / f"{name}.pkl")[["qid", "docno", "score"]].rename(columns={"score": name})
        frame = frame.merge(scores, on=["qid", "docno"], how="left", validate="one_to_one")
        if frame[name].isna().any():
            raise ValueError(f"{folder}: {name} misses some candidates")
    frame["z_first"] = 0.0
    for name in [first, *components]:
        frame[f"z_{name}"] = per_query_zscores(frame["qid"].to_numpy(), frame[name].to_numpy())
    frame["z_first"] = frame[f"z_{first}"]
    return frame, pd.read_pickle(folder / "qrels.pkl")


def ndcg(frame: pd.DataFrame, qrels: pd.DataFrame, weights: dict[str, float]) -> float:
    """nDCG@10 of the candidates ranked by ``sum w * z(component)`` (the first stage's order breaks ties)."""
    score = sum(weight * frame[f"z_{name}"].to_numpy() for name, weight in weights.items() if weight)
    score = score + 1e-9 * frame["z_first"].to_numpy()
    run = frame[["qid", "docno"]].assign(score=score)
    return float(pt.Evaluate(run, qrels, metrics=[pt.measures.nDCG @ 10])["nDCG@10"])


def left_out_choices(table: np.ndarray) -> list[int]:
    """For each collection (a column of ``table[grid point, collection]``), the grid point best on the others."""
    columns = range(table.shape[1])
    return [int(np.argmax(table[:, [other for other in columns if other != index]].mean(axis=1))) for index in columns]


def families(components: list[str], first: str, joint: dict[str, list[str]] | None = None
             ) -> dict[str, list[dict[str, float]]]:
    """The weight grids searched, by family name.

    A ``joint`` family chooses one of several components and its weight together (e.g. a model at several
    interpolation weights): its grid is the union of each component's ``first + weight * component`` grid.
    """
    found = {f"{first} + {name}": [{first: 1.0, name: weight} for weight in MODEL_WEIGHTS] for name in components}
    for label, members in (joint or {}).items():
        found[label] = [{first: 1.0, name: weight} for name in members for weight in MODEL_WEIGHTS]
    if "cos" in components:
        for model in (name for name in components if name != "cos"):
            found[f"{first} + cos + {model}"] = [
                {first: a, "cos": b, model: c} for a, b, c in itertools.product(GRID, GRID, GRID) if a + b + c > 0
            ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/anchor"))
    parser.add_argument("--first-stage", default="bm25", help="bm25 or dense: the candidates' first stage")
    parser.add_argument("--components", nargs="+", default=["cos", "ce3", "ce6"])
    parser.add_argument("--training", nargs="+", default=TRAINING, help="the collections weights are chosen on")
    parser.add_argument("--held-out", nargs="*", default=HELD_OUT, help="the collections reported once")
    parser.add_argument("--fixed", action="append", default=[],
                        help="LABEL=COMPONENT:WEIGHT,...: a mix with weights set elsewhere (a trained model's anchor)")
    parser.add_argument("--joint", action="append", default=[],
                        help="LABEL=COMPONENT,COMPONENT,...: choose the component and its weight together")
    parser.add_argument("--skip-families", action="store_true", help="report the fixed mixes only")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as markdown here")
    args = parser.parse_args()
    first = args.first_stage
    training, held_out = args.training, args.held_out
    data = {name: load(args.work / name, args.components, first) for name in training + held_out}
    fixed = {first: {first: 1.0}}
    if "cos" in args.components:
        fixed[f"hybrid ({first} + cos, equal)"] = {first: 1.0, "cos": 1.0}
    fixed.update({f"{name} alone": {name: 1.0} for name in args.components})
    for item in args.fixed:
        label, _, mix = item.partition("=")
        fixed[label] = {name: float(weight) for name, weight in (part.split(":") for part in mix.split(","))}
    report: dict = {"machine": describe_machine(), "first_stage": first, "training": training, "held_out": held_out,
                    "fixed": {}, "families": {}}
    for label, weights in fixed.items():
        report["fixed"][label] = {name: round(ndcg(*data[name], weights), 4) for name in training + held_out}
    joint = {label: members.split(",") for label, _, members in (item.partition("=") for item in args.joint)}
    unknown = sorted({name for members in joint.values() for name in members} - set(args.components))
    if unknown:
        parser.error(f"--joint names components not in --components: {', '.join(unknown)}")
    for family, grid in ({} if args.skip_families else families(args.components, first, joint)).items():
        table = np.array([[ndcg(*data[name], weights) for name in training] for weights in grid])
        lodo = {left_out: {"weights": grid[best], "nDCG@10": round(float(table[best, index]), 4)}
                for index, (left_out, best) in enumerate(zip(training, left_out_choices(table), strict=True))}
        chosen = int(np.argmax(table.mean(axis=1)))
        weights = grid[chosen]
        report["families"][family] = {
            "leave_one_out": lodo,
            "leave_one_out_mean": round(float(np.mean([row["nDCG@10"] for row in lodo.values()])), 4),
            "chosen": weights,
            "training_mean": round(float(table[chosen].mean()), 4),
            "held_out": {name: round(ndcg(*data[name], weights), 4) for name in held_out},
        }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(report) + "\n")


def _mix(weights: dict[str, float]) -> str:
    return " + ".join(f"{weight:g} {name}" for name, weight in weights.items() if weight) or "nothing"


def markdown(report: dict) -> str:
    """The report as two markdown tables: fixed mixes on every collection, and each family's choice."""
    training, held_out = report["training"], report["held_out"]
    lines = ["| mix | " + " | ".join(training + held_out) + " |", "|---|" + "---:|" * len(training + held_out)]
    for label, row in report["fixed"].items():
        lines.append(f"| {label} | " + " | ".join(f"{row[name]:.4f}" for name in training + held_out) + " |")
    lines += ["", "| family | " + " | ".join(f"{name} left out" for name in training)
              + " | mean left out | chosen on all |" + "".join(f" {name} |" for name in held_out),
              "|---|" + "---:|" * (len(training) + 1) + "---|" + "---:|" * len(held_out)]
    for family, found in report["families"].items():
        rows = [found["leave_one_out"][name] for name in training]
        left_out = " | ".join(f"{row['nDCG@10']:.4f} ({_mix(row['weights'])})" for row in rows)
        held = "".join(f" {found['held_out'][name]:.4f} |" for name in held_out)
        mean, chosen = found["leave_one_out_mean"], _mix(found["chosen"])
        lines.append(f"| {family} | {left_out} | {mean:.4f} | {chosen} |{held}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
