"""Vaswani (NPL): 11,429 physics abstracts, 93 queries, binary qrels; a copy ships inside the package."""

from __future__ import annotations

import os

from pyterrier_shallow.datasets._dataset import LocalDataset, Split
from pyterrier_shallow.datasets._formats import read_qrels, read_trec_docs, read_trec_topics
from pyterrier_shallow.datasets._query import topics_frame
from pyterrier_shallow.datasets._root import collection_dir

_FILES = ("doc-text.trec", "query-text.trec", "qrels")


def vaswani(root: str | os.PathLike | None = None) -> LocalDataset:
    """The Vaswani (NPL) collection, one split ``"all"``.

    Without ``root``, the copy bundled in the package is read, so this works offline on any machine.

    Args:
        root: A folder holding ``vaswani/`` (or the ``vaswani`` folder itself), with ``doc-text.trec`` (or
            ``doc-text.trec.gz``), ``query-text.trec`` and ``qrels``.
    """
    folder = collection_dir(root, "vaswani", _FILES, bundled=True)

    def topics():
        return topics_frame(read_trec_topics(folder / "query-text.trec"), source=str(folder / "query-text.trec"))

    def qrels():
        return read_qrels(folder / "qrels", columns=("qid", "iteration", "docno", "label"))

    def corpus():
        for docno, text in read_trec_docs(folder / "doc-text.trec"):
            yield {"docno": docno, "text": text}

    return LocalDataset("vaswani", folder, {"all": Split(topics, qrels, corpus)})
