"""Inputs cut into their groups: [CLS], the query (with its [SEP]) and the document (with the final [SEP])."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyterrier_shallow._pair_tokenizer import EncodedPairs


@dataclass
class QueryTokens:
    """The tokens of distinct queries, each followed by its [SEP]: ``(queries, length)`` ids, types and mask."""

    ids: torch.Tensor
    types: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device) -> QueryTokens:
        """This on ``device``."""
        return QueryTokens(self.ids.to(device), self.types.to(device), self.mask.to(device))


@dataclass
class DocTokens:
    """The [CLS] token and the document tokens (with the final [SEP]) of each pair.

    Attributes:
        cls_ids: ``(pairs,)`` the [CLS] token id.
        cls_types: ``(pairs,)`` its token type.
        ids: ``(pairs, length)`` document token ids, padded.
        types: ``(pairs, length)`` their token types.
        mask: ``(pairs, length)`` true on real tokens.
        pair_query: ``(pairs,)`` the row of each pair's query in the matching ``QueryTokens``.
    """

    cls_ids: torch.Tensor
    cls_types: torch.Tensor
    ids: torch.Tensor
    types: torch.Tensor
    mask: torch.Tensor
    pair_query: torch.Tensor

    def to(self, device: torch.device) -> DocTokens:
        """This on ``device``."""
        return DocTokens(*(tensor.to(device) for tensor in self.__dict__.values()))


@dataclass(frozen=True)
class PairLayout:
    """The special tokens and token types of a ``[CLS] query [SEP] document [SEP]`` tokenizer."""

    cls_id: int
    cls_type: int
    query_sep_id: int
    query_type: int
    doc_sep_id: int
    doc_type: int
    pad_id: int

    @classmethod
    def of(cls, tokenizer) -> PairLayout:
        """Reads the layout from a Hugging Face tokenizer; raises ``ValueError`` for other pair templates."""
        encoding = tokenizer("a", "b", padding=False, truncation=False, return_special_tokens_mask=True)
        special = list(encoding["special_tokens_mask"])
        ids = list(encoding["input_ids"])
        types = list(encoding.get("token_type_ids") or [0] * len(ids))
        if special != [1, 0, 1, 0, 1] or types[1] == types[3]:
            raise ValueError(
                "sparse attention needs a tokenizer that builds '[CLS] query [SEP] document [SEP]' with distinct "
                f"token types for query and document; this one gives ids {ids} and types {types} for a pair"
            )
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(ids[0], types[0], ids[2], types[1], ids[4], types[3], pad_id)


def query_tokens(encoded: EncodedPairs, queries: np.ndarray, layout: PairLayout) -> QueryTokens:
    """The tokens of the distinct queries ``queries`` (indices into ``encoded.query_ids``) with their [SEP]."""
    rows = [encoded.query_ids[query] + [layout.query_sep_id] for query in queries.tolist()]
    ids, mask = pad_rows(rows, layout.pad_id)
    return QueryTokens(torch.from_numpy(ids), torch.full(ids.shape, layout.query_type), torch.from_numpy(mask))


def doc_tokens(encoded: EncodedPairs, pairs: np.ndarray, pair_query: np.ndarray, layout: PairLayout) -> DocTokens:
    """The [CLS] and document tokens of the pairs ``pairs``, truncated as ``encoded`` says.

    Args:
        encoded: The tokenised pairs.
        pairs: Indices of the pairs in ``encoded``.
        pair_query: For each of ``pairs``, the row of its query in the ``QueryTokens`` it will be scored with.
        layout: The special tokens and types.
    """
    rows = [
        encoded.doc_ids[encoded.pair_doc[pair]][: encoded.pair_doc_length[pair]] + [layout.doc_sep_id]
        for pair in pairs.tolist()
    ]
    ids, mask = pad_rows(rows, layout.pad_id)
    count = len(rows)
    return DocTokens(
        cls_ids=torch.full((count,), layout.cls_id),
        cls_types=torch.full((count,), layout.cls_type),
        ids=torch.from_numpy(ids),
        types=torch.full(ids.shape, layout.doc_type),
        mask=torch.from_numpy(mask),
        pair_query=torch.as_tensor(pair_query, dtype=torch.long),
    )


def split_joint_inputs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor,
    *,
    share_queries: bool,
) -> tuple[QueryTokens, DocTokens]:
    """Cuts padded ``[CLS] query [SEP] document [SEP]`` inputs into their groups.

    The document is told apart by its token type (the one that differs from [CLS]'s). With ``share_queries``,
    identical queries of the batch become one row of the returned ``QueryTokens``.
    """
    if token_type_ids is None:
        raise ValueError("sparse attention needs token_type_ids to tell the query from the document")
    batch, length = input_ids.shape
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    is_doc = valid & (token_type_ids != token_type_ids[:, :1])
    query_length = valid.sum(1) - is_doc.sum(1) - 1
    doc_length = is_doc.sum(1)
    position = torch.arange(length, device=input_ids.device)[None]
    expected_query = (position >= 1) & (position <= query_length[:, None])
    expected_doc = (position > query_length[:, None]) & (position <= (query_length + doc_length)[:, None])
    if (doc_length < 1).any() or (query_length < 1).any() or not torch.equal(is_doc, expected_doc):
        raise ValueError(
            "inputs must be '[CLS] query [SEP] document [SEP]' followed by padding, with the document (and its [SEP]) "
            "carrying a token type other than [CLS]'s"
        )
    if not torch.equal(valid & ~is_doc & (position > 0), expected_query):
        raise ValueError("padding may only follow the document")
    query_index = (1 + torch.arange(int(query_length.max()), device=input_ids.device))[None].expand(batch, -1)
    query_mask = query_index <= query_length[:, None]
    doc_index = (query_length + 1)[:, None] + torch.arange(int(doc_length.max()), device=input_ids.device)[None]
    doc_mask = doc_index <= (query_length + doc_length)[:, None]
    doc_index = doc_index.clamp(max=length - 1)
    q_ids = input_ids.gather(1, query_index).masked_fill(~query_mask, 0)
    q_types = token_type_ids.gather(1, query_index)
    pair_query = torch.arange(batch, device=input_ids.device)
    if share_queries:
        q_ids, pair_query = torch.unique(q_ids, dim=0, return_inverse=True)
        first = torch.full((len(q_ids),), batch, device=input_ids.device).scatter_reduce(
            0, pair_query, torch.arange(batch, device=input_ids.device), reduce="amin"
        )
        q_types, query_mask = q_types[first], query_mask[first]
    docs = DocTokens(
        cls_ids=input_ids[:, 0],
        cls_types=token_type_ids[:, 0],
        ids=input_ids.gather(1, doc_index).masked_fill(~doc_mask, 0),
        types=token_type_ids.gather(1, doc_index),
        mask=doc_mask,
        pair_query=pair_query,
    )
    return QueryTokens(q_ids, q_types, query_mask), docs


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id rows padded into ``(rows, longest)`` ids and a boolean mask of the real tokens."""
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = True
    return ids, mask
