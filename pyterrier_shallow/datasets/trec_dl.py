"""TREC Deep Learning 2019/2020 passage topics and qrels, and the MS MARCO dev subset; no passage text."""

from __future__ import annotations

import os
from pathlib import Path

from pyterrier_shallow.datasets._dataset import LocalDataset, Split
from pyterrier_shallow.datasets._formats import read_pairs, read_qrels
from pyterrier_shallow.datasets._query import topics_frame
from pyterrier_shallow.datasets._root import collection_dir

_FILES = {
    "dl19": ("topics.dl19-passage.txt", "qrels.dl19-passage.txt"),
    "dl20": ("topics.dl20.txt", "qrels.dl20-passage.txt"),
    "dl20-judged": ("topics.dl20.txt", "qrels.dl20-passage.txt"),
    "dev-small": ("topics.msmarco-passage.dev-subset.txt", "qrels.msmarco-passage.dev-subset.txt"),
}


def trec_dl(root: str | os.PathLike | None = None, *, collection: str | os.PathLike | None = None) -> LocalDataset:
    """TREC DL passage topics and qrels, without passage text.

    Splits: ``"dl19"`` (default; 43 judged topics), ``"dl20"`` (200 topics), ``"dl20-judged"`` (its 54 judged
    topics) and ``"dev-small"`` (6,980 MS MARCO dev queries).

    The MS MARCO passages are not part of these files: ``get_corpus_iter`` raises ``NotImplementedError`` unless
    ``collection`` names an MS MARCO ``collection.tsv`` (``pid<TAB>passage`` lines).

    Args:
        root: A folder holding ``trec-dl/`` (or the ``trec-dl`` folder itself).
        collection: The MS MARCO passage collection, if you have it.
    """
    folder = collection_dir(root, "trec-dl", {file for pair in _FILES.values() for file in pair})
    passages = None
    if collection is not None:
        passages = Path(collection).expanduser()
        if not passages.is_file():
            raise FileNotFoundError(f"trec-dl: MS MARCO collection file {str(passages)!r} does not exist")
    splits = {name: _split(folder, name, passages) for name in _FILES}
    reason = (
        "trec-dl: the MS MARCO passage text is not available in these files; pass "
        "trec_dl(collection='.../collection.tsv') or attach text from another source"
    )
    return LocalDataset("trec-dl", folder, splits, no_corpus_reason=reason)


def _split(folder: Path, name: str, passages: Path | None) -> Split:
    topics_file, qrels_file = _FILES[name]

    def qrels():
        return read_qrels(folder / qrels_file, columns=("qid", "iteration", "docno", "label"))

    def topics():
        frame = topics_frame(read_pairs(folder / topics_file), source=str(folder / topics_file))
        if name.endswith("-judged"):
            frame = frame[frame["qid"].isin(qrels()["qid"])].reset_index(drop=True)
        return frame

    def corpus():
        for docno, text in read_pairs(passages):
            yield {"docno": docno, "text": text}

    return Split(topics, qrels, corpus if passages is not None else None)
