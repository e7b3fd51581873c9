"""Tokenising (query, document) pairs: each distinct text once, the document alone truncated."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class _Piece:
    """One element of a pair template: a special token, or the place of the query (``"a"``) or document (``"b"``)."""

    kind: str
    type_id: int
    token_id: int = -1


@dataclass
class EncodedPairs:
    """Token ids of pairs, ready to be cut into batches.

    Attributes:
        query_ids: The token ids of each distinct query (no special tokens).
        doc_ids: The token ids of each distinct document (no special tokens; at least one more than any pair keeps
            whenever the document is truncated, not necessarily all of them).
        pair_query: For each pair, the index of its query in ``query_ids``.
        pair_doc: For each pair, the index of its document in ``doc_ids``.
        pair_doc_length: For each pair, how many tokens of its document it keeps.
        lengths: For each pair, its length in tokens with the special tokens.
        truncated_docs: How many pairs had their document truncated.
        truncated_queries: How many pairs had their query truncated (queries longer than ``query_length``).
    """

    query_ids: list[list[int]]
    doc_ids: list[list[int]]
    pair_query: np.ndarray
    pair_doc: np.ndarray
    pair_doc_length: np.ndarray
    lengths: np.ndarray
    truncated_docs: int
    truncated_queries: int


class PairTokenizer:
    """Turns (query, document) text pairs into model inputs for any Hugging Face pair-classification tokenizer.

    Every distinct query and document is tokenised once, whatever the number of pairs it appears in. The query keeps
    up to ``query_length`` tokens; the document is truncated to whatever room is left (at most ``doc_length`` tokens
    and ``max_length`` in all), so the query is never truncated away by a long document.

    Args:
        tokenizer: A fast (Rust-backed) Hugging Face tokenizer.
        query_length: The most tokens kept of a query.
        doc_length: The most tokens kept of a document (``None``: as many as ``max_length`` allows).
        max_length: The most tokens of a pair, special tokens included.
    """

    def __init__(self, tokenizer, *, query_length: int, doc_length: int | None, max_length: int):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; a Rust-backed tokenizer is needed")
        self._backend = copy.deepcopy(backend)
        self._backend.no_truncation()
        self._backend.no_padding()
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._template = self._pair_template()
        self.num_special_tokens = sum(piece.kind == "special" for piece in self._template)
        if query_length < 1:
            raise ValueError(f"query_length must be at least 1, got {query_length}")
        if max_length < query_length + self.num_special_tokens + 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for a document after a query of up to {query_length} tokens "
                f"and {self.num_special_tokens} special tokens"
            )
        self.query_length = query_length
        self.doc_length = doc_length
        self.max_length = max_length

    def _pair_template(self) -> list[_Piece]:
        first = self._backend.encode("a", add_special_tokens=False)
        second = self._backend.encode("b", add_special_tokens=False)
        if len(first.ids) != 1 or len(second.ids) != 1:
            raise ValueError("cannot derive the pair template of this tokenizer")
        pair = self._backend.post_process(first, second, add_special_tokens=True)
        template, placed = [], []
        for token_id, type_id, special in zip(pair.ids, pair.type_ids, pair.special_tokens_mask, strict=True):
            if special:
                template.append(_Piece("special", type_id, token_id))
            else:
                kind = "a" if not placed else "b"
                placed.append(kind)
                template.append(_Piece(kind, type_id))
        if placed != ["a", "b"]:
            raise ValueError("cannot derive the pair template of this tokenizer")
        return template

    def _tokenize(self, texts: Sequence[str], *, cap: int | None = None) -> list[list[int]]:
        """The token ids of each text; with ``cap``, only the first ``cap + 1`` or more are guaranteed.

        A text far longer than ``cap`` tokens could need is cut at a space first (a prefix of whole words tokenises
        into a prefix of the whole text's tokens), so a 100,000-character document costs what its kept tokens cost;
        when the cut leaves too few tokens, the whole text is tokenised after all.
        """
        texts = list(texts)
        if cap is None:
            return [encoding.ids for encoding in self._backend.encode_batch(texts, add_special_tokens=False)]
        limit = (cap + 1) * _CHARS_PER_TOKEN
        cut = [_cut_at_space(text, limit) for text in texts]
        ids = [encoding.ids for encoding in self._backend.encode_batch(cut, add_special_tokens=False)]
        short = [number for number, (text, part) in enumerate(zip(texts, cut, strict=True))
                 if part is not text and len(ids[number]) <= cap]
        if short:
            redone = self._backend.encode_batch([texts[number] for number in short], add_special_tokens=False)
            for number, encoding in zip(short, redone, strict=True):
                ids[number] = encoding.ids
        return ids

    def truncated_ids(self, texts: Sequence[str], limit: int) -> tuple[list[list[int]], np.ndarray]:
        """Each text's first ``limit`` token ids (no special tokens), and whether it had more (a bool array)."""
        ids = self._tokenize(texts, cap=limit)
        return [row[:limit] for row in ids], np.array([len(row) > limit for row in ids], dtype=bool)

    def encode(self, queries: Sequence[str], docs: Sequence[str]) -> EncodedPairs:
        """Tokenises the pairs ``zip(queries, docs)``, each distinct text once, and truncates them."""
        query_codes, unique_queries = _factorize(queries)
        doc_codes, unique_docs = _factorize(docs)
        query_ids = self._tokenize(unique_queries)
        query_full = np.array([len(ids) for ids in query_ids], dtype=np.int64)
        query_ids = [ids[: self.query_length] for ids in query_ids]
        query_len = np.minimum(query_full, self.query_length)

        doc_room = self.max_length - self.num_special_tokens - query_len[query_codes]
        if self.doc_length is not None:
            doc_room = np.minimum(doc_room, self.doc_length)
        doc_ids = self._tokenize(unique_docs, cap=int(doc_room.max()) if len(doc_room) else 0)
        doc_full = np.array([len(ids) for ids in doc_ids], dtype=np.int64)
        doc_len = np.minimum(doc_full[doc_codes], doc_room)
        lengths = query_len[query_codes] + doc_len + self.num_special_tokens
        return EncodedPairs(
            query_ids=query_ids,
            doc_ids=doc_ids,
            pair_query=query_codes,
            pair_doc=doc_codes,
            pair_doc_length=doc_len,
            lengths=lengths,
            truncated_docs=int((doc_full[doc_codes] > doc_room).sum()),
            truncated_queries=int((query_full[query_codes] > self.query_length).sum()),
        )

    def collate(self, encoded: EncodedPairs, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Builds padded ``input_ids``, ``token_type_ids`` and ``attention_mask`` tensors for the given pairs."""
        width = int(encoded.lengths[indices].max())
        input_ids = np.full((len(indices), width), self.pad_token_id, dtype=np.int64)
        token_type_ids = np.zeros((len(indices), width), dtype=np.int64)
        attention_mask = np.zeros((len(indices), width), dtype=np.int64)
        for row, pair in enumerate(indices.tolist()):
            parts = {
                "a": encoded.query_ids[encoded.pair_query[pair]],
                "b": encoded.doc_ids[encoded.pair_doc[pair]][: encoded.pair_doc_length[pair]],
            }
            position = 0
            for piece in self._template:
                if piece.kind == "special":
                    input_ids[row, position] = piece.token_id
                    token_type_ids[row, position] = piece.type_id
                    position += 1
                else:
                    ids = parts[piece.kind]
                    input_ids[row, position : position + len(ids)] = ids
                    token_type_ids[row, position : position + len(ids)] = piece.type_id
                    position += len(ids)
            attention_mask[row, :position] = 1
        return {
            "input_ids": torch.from_numpy(input_ids),
            "token_type_ids": torch.from_numpy(token_type_ids),
            "attention_mask": torch.from_numpy(attention_mask),
        }


_CHARS_PER_TOKEN = 16
"""Characters of text read per token a document may keep before cutting it: several times what a word piece of
English takes, so that the cut nearly always leaves enough."""


def _cut_at_space(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` characters that ends before a space.

    Returns ``text`` itself when it is no longer than ``limit``, or has no space to cut at.
    """
    if len(text) <= limit:
        return text
    end = text.rfind(" ", 0, limit)
    return text[:end] if end > 0 else text


def _factorize(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Maps texts to codes of their distinct values, in order of first appearance."""
    codes: dict[str, int] = {}
    pair_codes = np.fromiter((codes.setdefault(text, len(codes)) for text in texts), dtype=np.int64, count=len(texts))
    return pair_codes, list(codes)
