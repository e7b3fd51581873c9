"""Writes a trained gated cross-encoder moved back toward its warm start, at several interpolation weights.

Each folder holds ``start + weight * (trained - start)`` for every weight of the model (``gated.interpolate``), as an
fp16 delta that ``CrossEncoder(folder)`` loads; ``benchmarks/anchor_components.py`` then scores them::

    python benchmarks/interpolate_models.py --trained pyterrier_shallow/models/cross-encoder-6-layers \
        --weights 0.25 0.5 0.75 --out runs/wise --prefix l6
    python benchmarks/anchor_components.py --out runs/anchor --threads 1 \
        --collections nfcorpus:dev cranfield cisi wikiqa:test --scorer ce6w50=ce:runs/wise/l6-050
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyterrier_shallow.gated import interpolate_from_warm_start, save_delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trained", type=Path, required=True, help="the trained model's folder")
    parser.add_argument("--start", type=Path, default=None,
                        help="its warm start's folder (default: all-MiniLM-L6-v2 at the same depth, gates closed)")
    parser.add_argument("--weights", type=float, nargs="+", required=True, help="0: the warm start, 1: the model")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prefix", default="model", help="folders are named PREFIX-WWW (WWW: the weight x 100)")
    args = parser.parse_args()
    for weight in args.weights:
        model, tokenizer = interpolate_from_warm_start(args.trained, weight, args.start)
        folder = save_delta(model, tokenizer, args.out / f"{args.prefix}-{round(weight * 100):03d}")
        print(f"{weight:g}: {folder}", flush=True)


if __name__ == "__main__":
    main()
