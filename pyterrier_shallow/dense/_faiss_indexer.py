"""Building a FaissIndex from a stream of documents: chunked encoding, bounded memory, atomic write."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._corpus import check_documents, chunks
from pyterrier_shallow._io import usual_permissions
from pyterrier_shallow._warnings import warn_user
from pyterrier_shallow.dense._encoders import stack_vectors
from pyterrier_shallow.dense._faiss_types import IndexSpec, new_index, train_index
from pyterrier_shallow.dense.bi_encoder import BiEncoder
from pyterrier_shallow.dense.faiss_index import DOCNOS_FILE, INDEX_FILE, FaissIndex, write_meta


class FaissIndexer(pt.Indexer):
    """Encodes documents (dicts with ``docno`` and the encoder's text field) and writes a :class:`FaissIndex`.

    Without an encoder, each document must carry its vector as ``doc_vec`` (e.g. ``model.doc_encoder() >> indexer``).

    Made by :meth:`FaissIndex.indexer`; see there for the options.
    """

    def __init__(
        self,
        index: FaissIndex,
        encoder: BiEncoder | None,
        spec: IndexSpec,
        *,
        chunk_size: int = 4096,
        overwrite: bool = False,
        verbose: bool = True,
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.target = index
        self.encoder = encoder
        self.spec = spec
        self.chunk_size = chunk_size
        self.overwrite = overwrite
        self.verbose = verbose

    def __repr__(self) -> str:
        return f"{self.target!r}.indexer({self.encoder!r}, index_type={self.spec.index_type!r})"

    def index_inputs(self) -> list[list[str]]:
        """The fields each document needs."""
        return [["docno", "doc_vec"]] if self.encoder is None else [["docno", self.encoder.text_field]]

    def index(self, corpus_iter: Iterable[dict] | pd.DataFrame) -> FaissIndex:
        """Encodes every document of ``corpus_iter`` and writes the index; returns the (reopened) index.

        Raises:
            FileExistsError: When ``path`` exists and ``overwrite`` is false.
            ValueError: On a document without a string docno or text, a repeated docno, or an empty corpus.
        """
        path = Path(self.target.path)
        if path.exists() and not self.overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or choose another path")
        if isinstance(corpus_iter, pd.DataFrame):
            corpus_iter = corpus_iter.to_dict(orient="records")
        path.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
        try:
            meta = self._build(corpus_iter, building)
            write_meta(building, meta)
            usual_permissions(building)  # mkdtemp makes the folder private
            _move_into_place(building, path)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        self.target._forget()
        return FaissIndex(path)

    def _build(self, corpus_iter: Iterable[dict], directory: Path) -> dict:
        started = time.perf_counter()
        total = len(corpus_iter) if hasattr(corpus_iter, "__len__") else None
        index, spec, pending, count, truncated = None, self.spec, [], 0, 0
        docnos_path = directory / "docnos.txt"
        with (
            open(docnos_path, "w", encoding="utf-8", newline="\n") as docnos_out,
            pt.tqdm(total=total, desc="Indexing", unit="doc", disable=not self.verbose) as progress,
        ):
            for chunk in chunks(corpus_iter, self.chunk_size):
                docnos, vectors, chunk_truncated = self._encode_chunk(chunk, offset=count, progress=progress.update)
                truncated += chunk_truncated
                docnos_out.write("".join(docno + "\n" for docno in docnos))
                count += len(docnos)
                if index is None and not spec.needs_training:
                    index = new_index(spec, vectors.shape[1])
                if index is None:
                    pending.append(vectors)
                    if sum(len(part) for part in pending) >= spec.train_size:
                        index, spec = self._train_and_flush(pending)
                else:
                    _add(index, vectors)
                if self.encoder is None:
                    progress.update(len(docnos))
        if count == 0:
            raise ValueError("the corpus is empty: there is nothing to index")
        if index is None:
            index, spec = self._train_and_flush(pending)
        faiss.write_index(index, str(directory / INDEX_FILE))
        _docnos_to_array(docnos_path, directory / DOCNOS_FILE, count)
        if truncated and self.encoder is not None and self.encoder.warn_truncation:
            warn_user(
                f"{truncated} of {count} documents were truncated to doc_length={self.encoder.doc_length} tokens"
            )
        encoder_meta = {"model": None, "pooling": None, "normalize": None, "dimension": index.d}
        if self.encoder is not None:
            encoder_meta = {**self.encoder.index_meta(), "text_field": self.encoder.text_field}
        return {
            "type": FaissIndex.ARTIFACT_TYPE,
            "format": FaissIndex.ARTIFACT_FORMAT,
            "package_hint": "pyterrier-shallow",
            **encoder_meta,
            "metric": "inner_product",
            "index_type": spec.index_type,
            "index_options": spec.as_meta(),
            "num_docs": count,
            "truncated_docs": truncated,
            "build_seconds": round(time.perf_counter() - started, 3),
            "faiss_version": faiss.__version__,
        }

    def _encode_chunk(self, chunk: list[dict], *, offset: int, progress) -> tuple[list[str], np.ndarray, int]:
        """Checks a chunk and returns its docnos, vectors and how many of its texts were truncated."""
        if self.encoder is None:
            docnos, _ = check_documents(chunk, None, offset=offset)
            vectors = stack_vectors(
                pd.Series([document["doc_vec"] for document in chunk]), who="FaissIndexer", column="doc_vec"
            )
            return docnos, vectors, 0
        docnos, texts = check_documents(chunk, self.encoder.text_field, offset=offset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # truncations are counted and reported once, at the end
            vectors = self.encoder.encode_docs(texts, verbose=False, progress=progress)
        return docnos, vectors, self.encoder.last_stats.truncated

    def _train_and_flush(self, pending: list[np.ndarray]) -> tuple[faiss.Index, IndexSpec]:
        sample = np.concatenate(pending)
        index, spec = train_index(self.spec, sample[: self.spec.train_size])
        _add(index, sample)
        pending.clear()
        return index, spec


def _add(index: faiss.Index, vectors: np.ndarray) -> None:
    if vectors.shape[1] != index.d:
        raise ValueError(f"a chunk of {vectors.shape[1]}-dimensional vectors cannot join {index.d}-dimensional ones")
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def _docnos_to_array(text_path: Path, array_path: Path, count: int) -> None:
    """Turns the docnos file (one a line) into a fixed-width bytes array, checking that no docno repeats."""
    width = 1
    with open(text_path, encoding="utf-8") as handle:
        for line in handle:
            width = max(width, len(line.rstrip("\n").encode("utf-8")))
    docnos = np.lib.format.open_memmap(array_path, mode="w+", dtype=f"S{width}", shape=(count,))
    with open(text_path, encoding="utf-8") as handle:
        for start in range(0, count, 1_000_000):
            lines = list(itertools.islice(handle, 1_000_000))
            docnos[start : start + len(lines)] = [line.rstrip("\n").encode("utf-8") for line in lines]
    ordered = np.sort(docnos)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    docnos.flush()
    del docnos
    text_path.unlink()
    if len(repeated):
        shown = [value.decode("utf-8") for value in np.unique(repeated)[:5]]
        raise ValueError(f"duplicate docno(s) {shown} in the corpus")


def _move_into_place(building: Path, path: Path) -> None:
    """Renames the finished directory to ``path``; an existing ``path`` is removed only after the swap."""
    if not path.exists():
        os.replace(building, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, old / "index")
    os.replace(building, path)
    shutil.rmtree(old, ignore_errors=True)
