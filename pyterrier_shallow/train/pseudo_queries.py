"""Self-supervised training pairs: a document's title or first sentence as a pseudo-query for its body."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import digest
from ..bm25 import bm25
from ..datasets import safe_query
from .data import RankingSource
from .negatives import NegativePool

MODES = ("title", "first_sentence")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def pseudo_queries(
    corpus_iter: Iterable[dict],
    *,
    mode: str = "title",
    title_field: str = "title",
    text_field: str = "text",
    min_query_words: int = 3,
    max_query_words: int = 32,
    min_body_words: int = 10,
    max_queries: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Turns a corpus into (pseudo-query, body) training data.

    With ``mode="title"`` a document's title is the query and its text the relevant body; with
    ``mode="first_sentence"`` the first sentence of the text is the query and the rest the body (so the body does not
    contain the query verbatim). Queries are reduced to words and numbers (``datasets.safe_query``), as the
    collections' own topics are. Documents whose query or body is out of the word bounds give no query, but their
    body still serves as a negative.

    Args:
        corpus_iter: Dicts with ``docno``, ``text_field`` and, for ``mode="title"``, ``title_field``.
        mode: ``"title"`` or ``"first_sentence"``.
        title_field: The title's field.
        text_field: The text's field.
        min_query_words: Shorter pseudo-queries are skipped.
        max_query_words: Longer pseudo-queries are skipped.
        min_body_words: Documents with a shorter body give no query.
        max_queries: Keep at most this many queries, drawn at random with ``seed``.
        seed: Seeds that draw.

    Returns:
        ``topics`` (``qid, query``), ``qrels`` (``qid, docno, label``) and ``docs`` (``{docno: body}``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rows, docs = [], {}
    for doc in corpus_iter:
        docno, text = doc.get("docno"), doc.get(text_field)
        if not isinstance(docno, str) or not isinstance(text, str):
            raise ValueError(f"documents need str docno and {text_field!r}; got {docno!r}, {type(text).__name__}")
        if docno in docs:
            raise ValueError(f"duplicate docno {docno!r} in the corpus")
        query, body = _split(doc, text, mode=mode, title_field=title_field)
        if not body.strip():
            continue
        docs[docno] = body
        if query and min_query_words <= len(query.split()) <= max_query_words and len(body.split()) >= min_body_words:
            rows.append((f"pseudo-{docno}", query, docno))
    if not rows:
        raise ValueError(f"no document gave a pseudo-query with mode={mode!r} (check {title_field!r}/{text_field!r})")
    if max_queries is not None and len(rows) > max_queries:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_queries, replace=False))
        rows = [rows[i] for i in keep]
    topics = pd.DataFrame([(qid, query) for qid, query, _ in rows], columns=["qid", "query"])
    qrels = pd.DataFrame([(qid, docno, 1) for qid, _, docno in rows], columns=["qid", "docno", "label"])
    return topics, qrels, docs


def _split(doc: dict, text: str, *, mode: str, title_field: str) -> tuple[str, str]:
    if mode == "title":
        title = doc.get(title_field)
        return (safe_query(title) if isinstance(title, str) else ""), text
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    if len(parts) < 2:
        return "", text
    return safe_query(parts[0]), parts[1]


def bodies_retriever(
    docs: dict[str, str], index_dir: str | os.PathLike, *, depth: int, verbose: bool = False
) -> tuple:
    """BM25 over the bodies that :func:`pseudo_queries` returned, indexed once in ``index_dir``.

    Returns:
        The retriever (``depth`` results a query) and the index folder's name, derived from the bodies.
    """
    index_path = Path(index_dir) / f"bodies-{digest(sorted(docs.items()))}"
    retriever = bm25(
        [{"docno": docno, "text": body} for docno, body in docs.items()], index_path, num_results=depth,
        fields=("text",), verbose=verbose,
    )
    return retriever, index_path.name


def pseudo_query_source(
    corpus_iter: Iterable[dict],
    index_dir: str | os.PathLike,
    *,
    mode: str = "title",
    depth: int = 100,
    sample_depth: int | None = None,
    max_queries: int | None = None,
    name: str = "pseudo-queries",
    seed: int = 0,
    verbose: bool = False,
    **options,
) -> RankingSource:
    """Builds a :class:`RankingSource` of pseudo-queries whose negatives are BM25's top documents over the bodies.

    The bodies are indexed with PISA in ``index_dir`` (once: the index folder's name is derived from the bodies, see
    :func:`pyterrier_shallow.bm25.bm25_index`), and the mined rankings are cached there too.

    Args:
        corpus_iter: The documents.
        index_dir: A folder for the BM25 index and the negatives cache.
        mode: ``"title"`` or ``"first_sentence"`` (see :func:`pseudo_queries`).
        depth: Candidates mined per pseudo-query.
        sample_depth: Sample negatives only from the first this many candidates.
        max_queries: Keep at most this many pseudo-queries.
        name: A name for the training card.
        seed: Seeds the choice of pseudo-queries.
        verbose: Show progress bars.
        **options: Passed on to :func:`pseudo_queries`.
    """
    topics, qrels, docs = pseudo_queries(corpus_iter, mode=mode, max_queries=max_queries, seed=seed, **options)
    retriever, index_name = bodies_retriever(docs, index_dir, depth=depth, verbose=verbose)
    negatives = NegativePool.mine(
        retriever, topics, qrels, depth=depth, corpus_docnos=list(docs), sample_depth=sample_depth,
        cache_dir=index_dir, key=f"bm25:{index_name}", verbose=verbose,
    )
    return RankingSource(topics, qrels, docs, negatives, name=f"{name} ({mode})")
