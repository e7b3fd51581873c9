"""Attention patterns over the three token groups of a cross-encoder input: [CLS], the query and the document."""

from __future__ import annotations

from dataclasses import dataclass

import torch

CLS, QUERY, DOC, PAD = 0, 1, 2, -1
"""Group codes of the tokens of a ``[CLS] query [SEP] document [SEP]`` input (the query's [SEP] is a query token)."""


@dataclass(frozen=True)
class AttentionPattern:
    """Which token groups attend to which, and how far document tokens look at other document tokens.

    A pair is laid out as ``[CLS] query [SEP] document [SEP]``; the first [SEP] belongs to the query, the last one to
    the document. Every group always attends to itself ([CLS] to [CLS], the query to the whole query); a document
    token sees the document tokens at most ``window`` positions before or after it (``2 * window + 1`` keys).
    The defaults are the pattern of Schlatt, Fröbe and Hagen (ECIR 2024): [CLS] sees everything, the query sees only
    the query (so it can be encoded once and shared by all candidates of that query), and document tokens see
    [CLS], the query and their window.

    Args:
        window: Document-to-document window on each side (``None``: the whole document).
        cls_to_query: [CLS] attends to the query.
        cls_to_doc: [CLS] attends to the document.
        query_to_cls: Query tokens attend to [CLS].
        query_to_doc: Query tokens attend to the document.
        doc_to_cls: Document tokens attend to [CLS].
        doc_to_query: Document tokens attend to the query.
    """

    window: int | None = 4
    cls_to_query: bool = True
    cls_to_doc: bool = True
    query_to_cls: bool = False
    query_to_doc: bool = False
    doc_to_cls: bool = True
    doc_to_query: bool = True

    def __post_init__(self):
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)):
            raise TypeError(f"window must be an int or None, got {self.window!r}")
        if self.window is not None and self.window < 0:
            raise ValueError(f"window must be at least 0, got {self.window}")

    @classmethod
    def dense(cls) -> AttentionPattern:
        """The full attention of an ordinary cross-encoder: every token sees every token."""
        return cls(window=None, query_to_cls=True, query_to_doc=True)

    @property
    def shares_query(self) -> bool:
        """Whether query tokens see nothing but the query, so that one encoding of a query serves all its pairs."""
        return not (self.query_to_cls or self.query_to_doc)

    @property
    def is_dense(self) -> bool:
        """Whether this pattern is full attention."""
        return self == AttentionPattern.dense()

    def group_table(self) -> torch.Tensor:
        """A 3 x 3 boolean table: entry ``[g, h]`` says whether group ``g`` attends to group ``h`` (CLS, QUERY, DOC)."""
        return torch.tensor(
            [
                [True, self.cls_to_query, self.cls_to_doc],
                [self.query_to_cls, True, self.query_to_doc],
                [self.doc_to_cls, self.doc_to_query, True],
            ]
        )

    def token_mask(self, groups: torch.Tensor) -> torch.Tensor:
        """The full token-to-token mask of this pattern (for reference and tests; kernels never build it).

        Args:
            groups: ``(batch, length)`` group codes (``CLS``, ``QUERY``, ``DOC``, ``PAD``) of each position.

        Returns:
            ``(batch, length, length)`` booleans: ``[b, i, j]`` is true where token ``i`` attends to token ``j``.
            Padding keys are never attended to; padding rows attend to every real token (their output is unused).
        """
        valid = groups != PAD
        table = self.group_table().to(groups.device)
        clipped = groups.clamp(min=0)
        allowed = table[clipped[:, :, None], clipped[:, None, :]]
        if self.window is not None:
            doc_index = torch.cumsum(groups == DOC, dim=1)
            both_doc = (groups == DOC)[:, :, None] & (groups == DOC)[:, None, :]
            far = (doc_index[:, :, None] - doc_index[:, None, :]).abs() > self.window
            allowed = allowed & ~(both_doc & far)
        allowed = allowed & valid[:, None, :]
        return torch.where(valid[:, :, None], allowed, valid[:, None, :].expand_as(allowed))
