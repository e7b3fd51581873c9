"""BM25 first stage: a PISA index built once per collection (atomically), and its retriever."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pyterrier_pisa
from pyterrier_pisa import PisaIndex

from pyterrier_shallow._io import usual_permissions
from pyterrier_shallow._native_output import native_output_held_back
from pyterrier_shallow.bm25_retriever import BM25Retriever

STEMMER = "porter2"
"""The stemmer of new indexes (PISA's default)."""

STOPWORDS = "terrier"
"""The stopword list applied to queries (PISA's default: Terrier's list)."""

FIELDS = ("title", "text")
"""The document fields indexed by default (those a document has, joined by a space)."""

_META = "pt_meta.json"
_OWN_KEY = "pyterrier_shallow"


def bm25_index(
    source: object | None,
    path: str | os.PathLike,
    *,
    fields: Sequence[str] = FIELDS,
    stemmer: str = STEMMER,
    stopwords: str | None = None,
    threads: int = 1,
    verbose: bool = False,
) -> PisaIndex:
    """Returns the PISA index at ``path``, building it from ``source`` first when it is missing or incomplete.

    The index is built in a temporary folder beside ``path`` and renamed into place once complete, so ``path``
    holds either nothing or a whole index. A complete index is reused as it is (``source`` is not read).

    Args:
        source: The documents: a dataset (anything with ``get_corpus_iter()``), a frame with ``docno`` and the
            fields, or an iterable of dicts. May be ``None`` when the index already exists.
        path: The index folder.
        fields: The document fields to index; each document must have at least one of them.
        stemmer: ``"porter2"``, ``"krovetz"`` or ``"none"``.
        stopwords: The stopword list applied to queries: ``"terrier"``, ``"lucene"`` or ``"none"``; by default
            the one recorded with an existing index, else ``"terrier"``.
        threads: Indexing and retrieval threads.
        verbose: Show progress while indexing.

    Raises:
        ValueError: On a document without a docno, with a repeated docno or one holding whitespace, with a
            non-string field or no text; or when an existing index was built with another stemmer.
        FileExistsError: When ``path`` exists but is neither a PISA index nor a partly built one.
    """
    path = Path(path)
    pyterrier_pisa.PisaStemmer(stemmer)  # raises ValueError on an unknown stemmer
    if stopwords is not None:
        pyterrier_pisa.PisaStopwords(stopwords)
    if _complete(path):
        return open_index(path, stemmer=stemmer, stopwords=stopwords, threads=threads)
    if source is None:
        raise FileNotFoundError(f"no BM25 index at {str(path)!r} and no documents given to build one")
    if path.exists() and not _partial(path):
        raise FileExistsError(f"{str(path)!r} exists and is not a PISA index; choose another path or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".building", dir=path.parent))
    try:
        count = _build(source, building, fields=tuple(fields), stemmer=stemmer, threads=threads, verbose=verbose)
        meta = json.loads((building / _META).read_text())
        meta[_OWN_KEY] = {"fields": list(fields), "stopwords": stopwords or STOPWORDS, "num_docs": count}
        (building / _META).write_text(json.dumps(meta))
        usual_permissions(building)  # mkdtemp makes the folder private
        if path.exists() and not _complete(path):
            shutil.rmtree(path)
        try:
            building.rename(path)
        except OSError:
            if not _complete(path):  # another process may have finished the same index first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return open_index(path, stemmer=stemmer, stopwords=stopwords, threads=threads)


def bm25(
    source: object | None,
    path: str | os.PathLike,
    *,
    num_results: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    fields: Sequence[str] = FIELDS,
    stemmer: str = STEMMER,
    stopwords: str | None = None,
    threads: int = 1,
    verbose: bool = False,
) -> pt.Transformer:
    """Returns a BM25 retriever over the PISA index at ``path``, building the index first if needed.

    Example::

        dataset = pyterrier_shallow.datasets.vaswani()
        retriever = bm25(dataset, "./indices/vaswani")
        pt.Experiment([retriever], dataset.get_topics(), dataset.get_qrels(), [pt.measures.nDCG @ 10])

    Args:
        source: The documents (see :func:`bm25_index`); may be ``None`` when the index exists.
        path: The index folder.
        num_results: Documents returned per query.
        k1: BM25 ``k1`` (PISA's default 0.9).
        b: BM25 ``b`` (PISA's default 0.4).
        fields: The document fields to index.
        stemmer: The stemmer of a new index.
        stopwords: The stopword list applied to queries (default: the index's, else ``"terrier"``).
        threads: Indexing and retrieval threads.
        verbose: Show progress bars (while retrieving, only with ``threads=1``).

    Returns:
        A :class:`~pyterrier_shallow.bm25_retriever.BM25Retriever`: input ``qid`` (each once), ``query``; output
        adds ``docno``, float32 ``score`` and ``rank``, keeping every input column. It checks its input, counts
        queries that match nothing in a warning, and pickles. Queries from :mod:`pyterrier_shallow.datasets` are
        already safe; make others safe with :func:`pyterrier_shallow.datasets.safe_query`.
    """
    bm25_index(source, path, fields=fields, stemmer=stemmer, stopwords=stopwords, threads=threads, verbose=verbose)
    return BM25Retriever(path, num_results=num_results, k1=k1, b=b, stemmer=stemmer, stopwords=stopwords,
                         threads=threads, verbose=verbose)


def _complete(path: Path) -> bool:
    return (path / _META).is_file()


def _partial(path: Path) -> bool:
    """Whether ``path`` is an empty folder or one a PISA build left unfinished."""
    if not path.is_dir():
        return False
    names = [child.name for child in path.iterdir()]
    return not names or any(name.startswith(("fwd", "inv")) for name in names)


def open_index(path: Path, *, stemmer: str, stopwords: str | None, threads: int) -> PisaIndex:
    """Opens the complete PISA index at ``path`` with the stopwords recorded at build time (unless given)."""
    meta = json.loads((path / _META).read_text())
    if stopwords is None:
        stopwords = meta.get(_OWN_KEY, {}).get("stopwords", STOPWORDS)
    if meta.get("stemmer", stemmer) != stemmer:
        raise ValueError(
            f"the index at {str(path)!r} was built with stemmer={meta['stemmer']!r}, not {stemmer!r}; "
            "pass that stemmer or another path"
        )
    return PisaIndex(str(path), stemmer=stemmer, stops=stopwords, threads=threads)


def _build(source: object, path: Path, *, fields: tuple[str, ...], stemmer: str, threads: int, verbose: bool) -> int:
    """Indexes ``source`` into the empty folder ``path`` and returns the number of documents."""
    documents = _joined(_documents(source), fields)
    first = next(documents, None)  # checked here, so that PISA never starts on a bad or empty corpus
    if first is None:
        raise ValueError("BM25 indexing: no documents to index")
    errors: list[Exception] = []
    counter = [0]
    index = PisaIndex(str(path), text_field="text", stemmer=stemmer, threads=threads)
    with native_output_held_back() as console:  # PISA logs each stage and counts percentages on stdout/stderr
        documents = pt.tqdm(itertools.chain([first], documents), desc="BM25 indexing", unit="doc",
                            disable=not verbose, file=console)
        index.indexer(text_field="text").index(_recorded(documents, errors, counter))
    if errors:
        raise errors[0]
    return counter[0]


def _recorded(documents: Iterable[dict], errors: list[Exception], counter: list[int]) -> Iterator[dict]:
    """Passes documents on, counting them, and records the first exception in ``errors`` (ending the stream).

    PISA reads the documents in a background thread, where an exception would otherwise be lost.
    """
    try:
        for document in documents:
            yield document
            counter[0] += 1
    except Exception as err:  # noqa: BLE001 - re-raised by the caller, outside PISA's reader thread
        errors.append(err)


def _documents(source: object) -> Iterable[dict]:
    if isinstance(source, pd.DataFrame):
        return source.to_dict("records")
    if hasattr(source, "get_corpus_iter"):
        return source.get_corpus_iter()
    if isinstance(source, (str, bytes, os.PathLike)) or not isinstance(source, Iterable):
        raise TypeError(f"cannot index {type(source).__name__}: give a dataset, a frame or an iterable of dicts")
    return source


def _joined(documents: Iterable[dict], fields: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Yields ``{"docno", "text"}`` with the fields joined, checking each document."""
    seen: set[str] = set()
    for document in documents:
        yield {"docno": _docno(document, seen), "text": _text(document, fields)}


def _docno(document: dict, seen: set[str]) -> str:
    docno = document.get("docno")
    if not isinstance(docno, str) or not docno:
        raise ValueError(f"BM25 indexing: document without a str docno: {document!r:.200}")
    if docno.split() != [docno]:
        raise ValueError(f"BM25 indexing: docno {docno!r} holds whitespace, which PISA cannot store")
    if docno in seen:
        raise ValueError(f"BM25 indexing: docno {docno!r} occurs twice")
    seen.add(docno)
    return docno


def _text(document: dict, fields: tuple[str, ...]) -> str:
    present = [field for field in fields if field in document]
    if not present:
        raise ValueError(f"BM25 indexing: document {document['docno']!r} has none of the fields {list(fields)}")
    for field in present:
        if not isinstance(document[field], str):
            raise ValueError(
                f"BM25 indexing: document {document['docno']!r} has a non-string {field!r}: {document[field]!r:.80}"
            )
    text = " ".join(document[field] for field in present if document[field].strip())
    if not text:
        raise ValueError(f"BM25 indexing: document {document['docno']!r} has no text in {present}")
    return text
