"""Any collection in the BEIR layout: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from pyterrier_shallow.datasets._dataset import LocalDataset, Split
from pyterrier_shallow.datasets._formats import lines, read_qrels
from pyterrier_shallow.datasets._query import topics_frame

_SPLIT_ORDER = ("test", "dev", "train")


def beir(path: str | os.PathLike) -> LocalDataset:
    """A collection in the BEIR layout; one split per ``qrels/<split>.tsv`` file (``test`` first when present).

    ``corpus.jsonl`` holds ``{"_id", "title", "text"}`` lines and ``queries.jsonl`` ``{"_id", "text"}`` lines; the
    qrels files are tab-separated with a header (``query-id corpus-id score``). A split's topics are the queries
    that its qrels judge. Documents have ``docno``, ``title`` and ``text``.

    Args:
        path: The collection's folder.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"BEIR folder {str(folder)!r} does not exist")
    missing = [file for file in ("corpus.jsonl", "queries.jsonl", "qrels") if not _present(folder / file)]
    if missing:
        raise FileNotFoundError(f"BEIR folder {str(folder)!r} lacks {missing}")
    names = sorted(file.name[: -len(".tsv")] for file in (folder / "qrels").glob("*.tsv"))
    if not names:
        raise FileNotFoundError(f"BEIR folder {str(folder)!r} has no qrels/<split>.tsv file")
    names.sort(key=lambda name: _SPLIT_ORDER.index(name) if name in _SPLIT_ORDER else len(_SPLIT_ORDER))
    return LocalDataset(f"beir:{folder.name}", folder, {name: _split(folder, name) for name in names})


def _present(path: Path) -> bool:
    return path.exists() or path.with_name(path.name + ".gz").is_file()


def _split(folder: Path, name: str) -> Split:
    def qrels():
        return read_qrels(folder / "qrels" / f"{name}.tsv", columns=("qid", "docno", "label"), skip_header=True)

    def topics():
        judged = set(qrels()["qid"])
        queries = [(record["_id"], record["text"]) for record in _jsonl(folder / "queries.jsonl", ("_id", "text"))]
        chosen = [(qid, text) for qid, text in queries if qid in judged]
        if not chosen:
            raise ValueError(f"{folder / 'queries.jsonl'}: none of the queries judged in split {name!r} is present")
        return topics_frame(chosen, source=str(folder / "queries.jsonl"))

    def corpus():
        for record in _jsonl(folder / "corpus.jsonl", ("_id", "text")):
            yield {"docno": record["_id"], "title": record.get("title") or "", "text": record["text"]}

    return Split(topics, qrels, corpus)


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[dict]:
    """Yields each JSON object of a JSON-lines file, checking that ``required`` fields are present (ids as str)."""
    for number, line in lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        absent = [field for field in required if field not in record]
        if absent:
            raise ValueError(f"{path}:{number}: missing field(s) {absent}")
        record["_id"] = str(record["_id"])
        yield record
