"""Cranfield and CISI: classic collections in the SMART format (``.I``, ``.T``, ``.W`` ... fields)."""

from __future__ import annotations

import os

from pyterrier_shallow.datasets._dataset import LocalDataset, Split
from pyterrier_shallow.datasets._formats import read_qrels, read_smart
from pyterrier_shallow.datasets._query import topics_frame
from pyterrier_shallow.datasets._root import collection_dir

CRANFIELD_SOURCE_DOCUMENT = -1
"""The code ``cranqrel`` gives each question's source paper (the paper whose author wrote the question)."""


def cranfield(root: str | os.PathLike | None = None) -> LocalDataset:
    """Cranfield 1400 (aeronautics): 1,400 documents with titles, 225 queries, graded qrels; one split ``"all"``.

    ``cran.qry`` numbers its queries 001-365 with gaps while ``cranqrel`` numbers them 1-225 in file order, so
    qids are the queries' positions in ``cran.qry`` (``"1"`` ... ``"225"``), which is what the qrels refer to.
    ``cranqrel`` grades 1 (complete answer) to 4 (minimum interest); labels are turned around so that higher
    means more relevant: label = 5 - grade (4 complete answer ... 1 minimum interest). Rows graded -1 mark the
    question's source paper, which was not graded; they keep label 0.

    Args:
        root: A folder holding ``cranfield/`` (or the ``cranfield`` folder itself).
    """
    folder = collection_dir(root, "cranfield", ("cran.all.1400", "cran.qry", "cranqrel"))

    def topics():
        records = list(read_smart(folder / "cran.qry"))
        queries = [record.get("W", "") for record in records]
        return topics_frame(enumerate(queries, start=1), source=str(folder / "cran.qry"))

    def qrels():
        return read_qrels(folder / "cranqrel", columns=("qid", "docno", "label"), label=_cranfield_label)

    def corpus():
        for record in read_smart(folder / "cran.all.1400"):
            yield {"docno": record["I"], "title": record.get("T", ""), "text": record.get("W", "")}

    return LocalDataset("cranfield", folder, {"all": Split(topics, qrels, corpus)})


def _cranfield_label(grade: str) -> int:
    value = int(grade)
    if value == CRANFIELD_SOURCE_DOCUMENT:
        return 0
    if not 1 <= value <= 4:
        raise ValueError(f"unknown Cranfield grade {grade!r}")
    return 5 - value


def cisi(root: str | os.PathLike | None = None) -> LocalDataset:
    """CISI (library science): 1,460 documents with titles, 112 queries (76 judged), binary qrels; split ``"all"``.

    The query text is the ``.W`` field (some queries also carry the title and authors of the paper they came
    from, which are left out).

    Args:
        root: A folder holding ``cisi/`` (or the ``cisi`` folder itself).
    """
    folder = collection_dir(root, "cisi", ("CISI.ALL", "CISI.QRY", "CISI.REL"))

    def topics():
        records = list(read_smart(folder / "CISI.QRY"))
        pairs = [(record["I"], record.get("W", "")) for record in records]
        return topics_frame(pairs, source=str(folder / "CISI.QRY"))

    def qrels():
        # every listed pair is relevant; the last two fields are unused zeros
        return read_qrels(folder / "CISI.REL", columns=("qid", "docno", "unused", "label"), label=lambda _: 1)

    def corpus():
        for record in read_smart(folder / "CISI.ALL"):
            yield {"docno": record["I"], "title": record.get("T", ""), "text": record.get("W", "")}

    return LocalDataset("cisi", folder, {"all": Split(topics, qrels, corpus)})
