"""The poly-encoder's learned codes and its two attention steps (Humeau et al., ICLR 2020)."""

from __future__ import annotations

import math

import torch

CODE_COUNTS = (16, 64, 360)
"""The numbers of codes the paper evaluated; any positive number works."""


class PolyCodes(torch.nn.Module):
    """m learned codes that summarise a query's token outputs into m vectors, and the score of a document vector.

    With ``h_j`` the query's token outputs, ``c_i`` the codes and ``d`` a document's vector:
    ``y_i = sum_j softmax_j(c_i . h_j) h_j`` (i = 1..m), ``y_q = sum_i softmax_i(d . y_i) y_i``, ``score = d . y_q``.
    The codes start small, where every ``y_i`` is close to the mean of the query's token outputs: the untrained model
    ranks documents almost as its bi-encoder's mean pooling does, and training moves on from there. They must not
    start too small: codes that attend alike receive the same gradient and stay alike, whatever m.

    Args:
        num_codes: m.
        dimension: The encoder's output size.
        scaled: Divide both attention logits by ``sqrt(dimension)`` (the paper's attention is unscaled).
        init_std: Standard deviation of the codes' initial values: small gives near-uniform attention at the start
            (mean pooling), large enough keeps the codes apart.
        seed: Seeds the initial values.
    """

    def __init__(
        self, num_codes: int = 16, dimension: int = 384, *, scaled: bool = False, init_std: float = 0.05, seed: int = 0
    ):
        super().__init__()
        if num_codes < 1:
            raise ValueError(f"num_codes must be at least 1, got {num_codes}")
        if dimension < 1:
            raise ValueError(f"dimension must be at least 1, got {dimension}")
        generator = torch.Generator().manual_seed(seed)
        self.codes = torch.nn.Parameter(torch.randn(num_codes, dimension, generator=generator) * init_std)
        self.scaled = bool(scaled)

    @property
    def num_codes(self) -> int:
        """m, the number of codes."""
        return self.codes.shape[0]

    @property
    def dimension(self) -> int:
        """The size of the vectors the codes attend over."""
        return self.codes.shape[1]

    @property
    def scale(self) -> float:
        """The factor applied to both attention logits."""
        return 1.0 / math.sqrt(self.dimension) if self.scaled else 1.0

    def query_vectors(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attends each code over a batch of queries' token outputs.

        Args:
            hidden: ``(queries, tokens, dimension)`` token outputs, padding included.
            mask: ``(queries, tokens)``, true (or 1) at real tokens.

        Returns:
            ``(queries, m, dimension)``: the vectors ``y_i`` of each query.
        """
        if hidden.shape[-1] != self.dimension:
            raise ValueError(f"token outputs have {hidden.shape[-1]} dimensions, the codes {self.dimension}")
        logits = torch.einsum("bld,md->bml", hidden, self.codes.to(hidden.dtype)) * self.scale
        logits = logits.masked_fill(~mask.bool()[:, None, :], float("-inf"))
        return torch.softmax(logits, dim=-1) @ hidden

    def score(self, query_vectors: torch.Tensor, doc_vectors: torch.Tensor) -> torch.Tensor:
        """Scores documents against one query's code vectors, or each query against its own documents.

        Args:
            query_vectors: ``(m, dimension)`` for one query, or ``(queries, m, dimension)``.
            doc_vectors: ``(docs, dimension)`` for one query, or ``(queries, docs, dimension)``.

        Returns:
            ``(docs,)`` or ``(queries, docs)`` scores.
        """
        attention = torch.softmax(doc_vectors @ query_vectors.transpose(-1, -2) * self.scale, dim=-1)
        return ((attention @ query_vectors) * doc_vectors).sum(dim=-1)
