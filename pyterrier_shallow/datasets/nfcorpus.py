"""NFCorpus (original release): medical documents and NutritionFacts queries, with separate test and dev corpora."""

from __future__ import annotations

import os
from pathlib import Path

from pyterrier_shallow.datasets._dataset import LocalDataset, Split
from pyterrier_shallow.datasets._formats import read_pairs, read_qrels
from pyterrier_shallow.datasets._query import topics_frame
from pyterrier_shallow.datasets._root import collection_dir

_TOPIC_FILES = {"test": "queries.beir-test.tsv", "dev": "dev.titles.queries"}


def nfcorpus(root: str | os.PathLike | None = None) -> LocalDataset:
    """NFCorpus, splits ``"test"`` (default) and ``"dev"``, each with its own corpus (``test.docs``, ``dev.docs``).

    Test topics are the 323 cased titles of ``queries.beir-test.tsv``; dev topics are ``dev.titles.queries``
    (lower-cased, as released). Qrels are the ``*.2-1-0.qrel`` files (2 direct, 1 indirect link), the grading used
    in the release's experiments and by BEIR. Document text is the release's pre-processed form.

    Args:
        root: A folder holding ``nfcorpus/`` (or the ``nfcorpus`` folder itself).
    """
    required = [file for split in _TOPIC_FILES for file in (f"{split}.docs", f"{split}.2-1-0.qrel")]
    folder = collection_dir(root, "nfcorpus", [*required, *_TOPIC_FILES.values()])
    return LocalDataset("nfcorpus", folder, {split: _split(folder, split) for split in _TOPIC_FILES})


def _split(folder: Path, split: str) -> Split:
    def topics():
        path = folder / _TOPIC_FILES[split]
        return topics_frame(read_pairs(path), source=str(path))

    def qrels():
        return read_qrels(folder / f"{split}.2-1-0.qrel", columns=("qid", "iteration", "docno", "label"))

    def corpus():
        for docno, text in read_pairs(folder / f"{split}.docs"):
            yield {"docno": docno, "text": text}

    return Split(topics, qrels, corpus)
