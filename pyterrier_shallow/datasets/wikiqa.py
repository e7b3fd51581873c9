"""WikiQA answer-sentence selection: questions as topics, each with its own candidate Wikipedia sentences."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from pyterrier_shallow.datasets._dataset import LocalDataset, Split
from pyterrier_shallow.datasets._formats import lines
from pyterrier_shallow.datasets._query import topics_frame
from pyterrier_shallow.datasets._root import collection_dir

_FILES = {"test": "WikiQA-test.tsv", "train": "WikiQA-train.tsv"}
_SHORT_HEADER = ["QuestionID", "Question", "SentenceID", "Sentence", "Label"]
_FULL_HEADER = ["QuestionID", "Question", "DocumentID", "DocumentTitle", "SentenceID", "Sentence", "Label"]


def wikiqa(root: str | os.PathLike | None = None) -> LocalDataset:
    """WikiQA, splits ``"test"`` (default, 633 questions) and ``"train"`` (2,118 questions).

    Each split's corpus is its candidate sentences (``docno`` is the SentenceID; test sentences also carry their
    Wikipedia page ``title``), its qrels label every candidate 1 (answers the question) or 0, and
    :meth:`LocalDataset.get_results` gives the candidate frame (``qid``, ``query``, ``docno``, ``text``) to
    rerank. The train file gives every row its own QuestionID, so train questions are numbered in file order
    (``"train-1"`` ... ``"train-2118"``); test questions keep their QuestionID. The train file's CSV-style quoting
    (``"..."`` around fields, ``""`` for a quote) is undone, and its 13 rows in the full release's 7-field layout
    are read by their first two and last three fields.

    Args:
        root: A folder holding ``wikiqa/`` (or the ``wikiqa`` folder itself).
    """
    folder = collection_dir(root, "wikiqa", _FILES.values())
    return LocalDataset("wikiqa", folder, {split: _split(folder / file, split) for split, file in _FILES.items()})


@dataclass(frozen=True)
class _Row:
    qid: str
    question: str
    docno: str
    sentence: str
    label: int
    title: str | None


def _split(path: Path, split: str) -> Split:
    read = cache(lambda: _read(path, split))

    def topics():
        rows = read()
        first = {row.qid: row.question for row in rows}
        return topics_frame(first.items(), source=str(path))

    def qrels():
        frame = pd.DataFrame([(row.qid, row.docno, row.label) for row in read()], columns=["qid", "docno", "label"])
        return frame.astype({"qid": "str", "docno": "str", "label": "int64"})

    def corpus():
        texts: dict[str, str] = {}
        for row in read():
            if row.docno in texts:
                if texts[row.docno] != row.sentence:
                    raise ValueError(f"{path}: sentence {row.docno!r} has two different texts")
                continue
            texts[row.docno] = row.sentence
            yield {"docno": row.docno, "text": row.sentence} | ({} if row.title is None else {"title": row.title})

    def results():
        frame = pd.DataFrame([(row.qid, row.docno, row.sentence) for row in read()], columns=["qid", "docno", "text"])
        return topics().merge(frame.astype("str"), on="qid", how="inner")

    return Split(topics, qrels, corpus, results)


def _read(path: Path, split: str) -> list[_Row]:
    """Reads every candidate row of a WikiQA file (either layout), giving each question one qid."""
    rows, header, blocks = [], None, []
    for number, line in lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if header is None:
            if fields not in (_SHORT_HEADER, _FULL_HEADER):
                raise ValueError(f"{path}:{number}: unknown WikiQA header {fields}")
            header = fields
            continue
        if len(fields) not in (len(header), len(_FULL_HEADER)):
            raise ValueError(f"{path}:{number}: expected {len(header)} tab-separated fields, got {len(fields)}")
        full = len(fields) == len(_FULL_HEADER)
        quoted = header == _SHORT_HEADER and not full
        question, docno, sentence, label = fields[1], fields[-3], fields[-2], fields[-1]
        if quoted:
            question, sentence = _unquote(question), _unquote(sentence)
        if label not in ("0", "1"):
            raise ValueError(f"{path}:{number}: label must be 0 or 1, got {label!r}")
        if not blocks or blocks[-1][1] != question:
            blocks.append((fields[0], question))
        title = fields[3] if full and header == _FULL_HEADER else None
        rows.append((len(blocks) - 1, docno, sentence, int(label), title, fields[0]))
    if header is None:
        raise ValueError(f"{path}: empty file")
    block_ids = {}
    for block, _, _, _, _, row_qid in rows:
        block_ids.setdefault(block, set()).add(row_qid)
    own_ids = [next(iter(block_ids[i])) if len(block_ids[i]) == 1 else None for i in range(len(blocks))]
    if None in own_ids or len(set(own_ids)) != len(own_ids):
        own_ids = [f"{split}-{i}" for i in range(1, len(blocks) + 1)]
    return [
        _Row(own_ids[block], blocks[block][1], docno, sentence, label, title)
        for block, docno, sentence, label, title, _ in rows
    ]


def _unquote(field: str) -> str:
    """Undoes CSV quoting (``"a ""b"" c"`` -> ``a "b" c``) when ``field`` is quoted that way; else returns it."""
    if len(field) >= 2 and field[0] == field[-1] == '"' and '"' not in field[1:-1].replace('""', ""):
        return field[1:-1].replace('""', '"')
    return field
