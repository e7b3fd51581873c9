"""Corpora as indexers read them: documents in chunks, each checked, and the position of each docno."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd


def chunks(corpus_iter: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Lists of up to ``size`` documents, read from ``corpus_iter`` one list at a time."""
    iterator = iter(corpus_iter)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def check_documents(chunk: list[dict], field: str | None, *, offset: int) -> tuple[list[str], list[str]]:
    """Returns the docnos and texts of a chunk (``field=None``: each document must carry ``doc_vec`` instead)."""
    docnos, texts = [], []
    for position, document in enumerate(chunk, start=offset):
        if not isinstance(document, dict):
            raise ValueError(f"document {position} is a {type(document).__name__}, not a dict with 'docno'")
        docno = document.get("docno")
        if not isinstance(docno, str) or not docno or any(char in docno for char in "\n\r\0"):
            raise ValueError(f"document {position} has docno {docno!r}; docnos must be non-empty str on one line")
        docnos.append(docno)
        if field is None:
            if "doc_vec" not in document:
                raise ValueError(
                    f"document {docno!r} has no 'doc_vec'; pass an encoder to indexer() to encode text instead"
                )
            continue
        text = document.get(field)
        if not isinstance(text, str):
            hint = f" (it has {sorted(document)})" if field not in document else ""
            raise ValueError(f"document {docno!r} has no str {field!r} (found {type(text).__name__}){hint}")
        texts.append(text)
    if len(set(docnos)) != len(docnos):
        repeated = pd.Series(docnos)[pd.Series(docnos).duplicated()].unique()[:5].tolist()
        raise ValueError(f"duplicate docno(s) {repeated} in the corpus")
    return docnos, texts



def docno_positions(docnos: np.ndarray) -> dict[str, int]:
    """Maps each docno (bytes or str, in index order) to its position in the index."""
    return {docno.decode() if isinstance(docno, bytes) else str(docno): position
            for position, docno in enumerate(docnos.tolist())}
