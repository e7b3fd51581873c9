"""How the shipped precomputed cross-encoder mixes its score with the anchored poly-encoder's, reranking after it."""

from __future__ import annotations

from pyterrier_shallow.anchor import Anchor

AFTER_POLY_ENCODER = Anchor(
    first_stage=1.0,
    model=0.5,
    source="chosen after the shipped anchored poly-encoder over BM25's top 100, for depths 10 to 100, leaving one of "
    "NFCorpus dev, Cranfield and CISI out at a time (benchmarks/cascade_selection.py)",
)
"""``z(poly-encoder's anchored score) + 0.5 * z(cross-encoder)`` over the candidates the cross-encoder reranks.

For the cascade ``bm25 % 100 >> PolyEncoder().reranker(dense) % k >> states.reranker(anchor=AFTER_POLY_ENCODER)``
with the shipped ``cross-encoder-precomputed`` model. The weight was chosen on the training collections alone;
figures in ``docs/precomputed.md``.
"""
