"""Readers for the plain-text formats of classic test collections: TREC, SMART, tab-separated pairs, qrels."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pandas as pd

_SMART_FIELD = re.compile(r"^\.([A-Z])\s*$")
_TREC_TOPIC = re.compile(r"<top>.*?<num>(.*?)</num>.*?<title>(.*?)</title>.*?</top>", re.DOTALL)


def open_text(path: Path) -> IO[str]:
    """Opens ``path`` (or, when it does not exist, ``path.gz``) for reading UTF-8 text."""
    if not path.is_file() and path.with_name(path.name + ".gz").is_file():
        path = path.with_name(path.name + ".gz")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, line)`` for each line, without its line ending (LF, CRLF or CR)."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def squash(text: str) -> str:
    """Collapses every run of whitespace (line breaks included) into one space and strips the ends."""
    return " ".join(text.split())


def read_trec_docs(path: Path) -> Iterator[tuple[str, str]]:
    """Yields ``(docno, text)`` for each ``<DOC><DOCNO>...</DOCNO> text </DOC>`` block of a TREC file."""
    docno, body, inside = None, [], False
    for number, line in lines(path):
        stripped = line.strip()
        if stripped == "<DOC>":
            docno, body, inside = None, [], True
        elif stripped == "</DOC>":
            if docno is None:
                raise ValueError(f"{path}:{number}: document without <DOCNO>")
            yield docno, squash(" ".join(body))
            inside = False
        elif inside and stripped.startswith("<DOCNO>"):
            match = re.fullmatch(r"<DOCNO>\s*(.*?)\s*</DOCNO>", stripped)
            if match is None:
                raise ValueError(f"{path}:{number}: malformed DOCNO line {line!r}")
            docno = match.group(1)
        elif inside:
            body.append(line)
    if inside:
        raise ValueError(f"{path}: the last document has no closing </DOC>")


def read_trec_topics(path: Path) -> list[tuple[str, str]]:
    """Returns ``(qid, title)`` for each ``<top><num>...</num><title>...</title></top>`` topic of a TREC file."""
    with open_text(path) as handle:
        content = handle.read()
    return [(squash(num), squash(title)) for num, title in _TREC_TOPIC.findall(content)]


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Returns ``(id, text)`` for each ``id<TAB>text`` line (blank lines are skipped)."""
    pairs = []
    for number, line in lines(path):
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        if not tab or not key.strip():
            raise ValueError(f"{path}:{number}: expected 'id<TAB>text', got {line[:80]!r}")
        pairs.append((key.strip(), text.strip()))
    return pairs


def read_smart(path: Path) -> Iterator[dict[str, str]]:
    """Yields one record per ``.I`` entry of a SMART file: ``{"I": id, "T": ..., "W": ..., ...}``.

    Field markers are lines holding only ``.<letter>``; each field's lines are joined and whitespace collapsed.
    """
    record: dict[str, list[str]] | None = None
    field = None
    for number, line in lines(path):
        if line.startswith(".I "):
            if record is not None:
                yield _smart_record(record)
            record, field = {"I": [line[3:].strip()]}, None
            continue
        marker = _SMART_FIELD.match(line)
        if record is None:
            if line.strip():
                raise ValueError(f"{path}:{number}: text before the first '.I' line")
            continue
        if marker:
            field = marker.group(1)
            record.setdefault(field, [])
        elif field is not None:
            record[field].append(line)
    if record is not None:
        yield _smart_record(record)


def _smart_record(record: dict[str, list[str]]) -> dict[str, str]:
    return {field: squash(" ".join(parts)) for field, parts in record.items()}


def read_qrels(
    path: Path, *, columns: tuple[str, ...], label: Callable[[str], int] = int, skip_header: bool = False
) -> pd.DataFrame:
    """Reads a whitespace-separated qrels file into a frame with ``qid``, ``docno`` (str) and ``label`` (int64).

    Args:
        path: The file.
        columns: The name of each field of a line; it must include ``qid``, ``docno`` and ``label``
            (other names, such as ``iteration``, are read and dropped).
        label: Converts the label field into an int.
        skip_header: Skip the first line.

    Raises:
        ValueError: On a line with the wrong number of fields, a bad label, or a repeated (qid, docno) pair.
    """
    rows = []
    for number, line in lines(path):
        if (skip_header and number == 1) or not line.strip():
            continue
        fields = line.split()
        if len(fields) != len(columns):
            raise ValueError(f"{path}:{number}: expected {len(columns)} fields {columns}, got {line!r}")
        row = dict(zip(columns, fields, strict=True))
        try:
            value = label(row["label"])
        except ValueError as err:
            raise ValueError(f"{path}:{number}: bad relevance label {row['label']!r}") from err
        rows.append((row["qid"], row["docno"], value))
    frame = pd.DataFrame(rows, columns=["qid", "docno", "label"])
    frame = frame.astype({"qid": "str", "docno": "str", "label": "int64"})
    repeated = frame.duplicated(["qid", "docno"])
    if repeated.any():
        first = frame.loc[repeated].iloc[0]
        raise ValueError(f"{path}: (qid, docno) ({first['qid']!r}, {first['docno']!r}) is judged more than once")
    return frame
