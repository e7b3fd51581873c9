"""FaissIndex: a directory artifact holding a FAISS index of document vectors and its docnos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pyterrier as pt

from pyterrier_shallow._path_artifact import PathArtifact
from pyterrier_shallow._warnings import warn_user
from pyterrier_shallow.dense.bi_encoder import BiEncoder

META_FILE = "pt_meta.json"
INDEX_FILE = "index.faiss"
DOCNOS_FILE = "docnos.npy"


class FaissIndex(PathArtifact):
    """A dense index on disk: ``index.faiss`` (inner-product FAISS index), ``docnos.npy`` and ``pt_meta.json``.

    The directory appears only once complete: :meth:`indexer` builds it in a temporary directory beside ``path``
    and renames it into place. ``pt_meta.json`` records the type (``dense_index``), format (``faiss``), the encoder
    (model, pooling, normalisation, dimension), the FAISS index type and its options, and the number of documents.

    Example::

        model = pyterrier_shallow.BiEncoder()
        index = pyterrier_shallow.FaissIndex("./vaswani.faiss")
        index.indexer(model, index_type="hnsw").index(dataset.get_corpus_iter())
        results = index.retriever(model, num_results=100)(dataset.get_topics())

    Args:
        path: The index directory.
    """

    ARTIFACT_TYPE = "dense_index"
    ARTIFACT_FORMAT = "faiss"
    _REQUIRED_FILES = (INDEX_FILE, DOCNOS_FILE)
    _BUILD_HINT = "FaissIndex(path).indexer(encoder).index(corpus_iter)"
    _REOPENED = ("_faiss", "_docnos", "_positions")  # reopened lazily where unpickled

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._meta: dict | None = None
        self._faiss: faiss.Index | None = None
        self._docnos: np.ndarray | None = None
        self._positions: dict[str, int] | None = None

    def built(self) -> bool:
        """Whether ``path`` holds a complete index."""
        return (self.path / META_FILE).is_file() and (self.path / INDEX_FILE).is_file()

    def __len__(self) -> int:
        return int(self.meta["num_docs"])

    @property
    def dimension(self) -> int:
        """The size of the indexed vectors."""
        return int(self.meta["dimension"])

    def faiss_index(self) -> faiss.Index:
        """The FAISS index, read from disk on first use and checked against ``pt_meta.json`` and the docnos."""
        if self._faiss is None:
            meta = self.meta
            index = faiss.read_index(str(self.path / INDEX_FILE))
            if index.ntotal != meta["num_docs"] or index.d != meta["dimension"]:
                raise ValueError(
                    f"{self.path}: index.faiss holds {index.ntotal} vectors of {index.d} dimensions, but pt_meta.json "
                    f"records {meta['num_docs']} of {meta['dimension']}; the index is damaged, build it again"
                )
            if len(self.docnos()) != index.ntotal:
                raise ValueError(
                    f"{self.path}: {len(self.docnos())} docnos for {index.ntotal} vectors; the index is damaged"
                )
            self._faiss = index
        return self._faiss

    def docnos(self) -> np.ndarray:
        """The docno of each vector, in index order (a read-only, memory-mapped bytes array)."""
        if self._docnos is None:
            self.meta  # noqa: B018 - checks the directory first
            self._docnos = np.load(self.path / DOCNOS_FILE, mmap_mode="r")
        return self._docnos

    def vectors(self, docnos: list[str], *, who: str = "FaissIndex", instead: str | None = None) -> np.ndarray:
        """Returns the stored vectors of ``docnos``, float32, one row each.

        Exact for ``flat`` and ``hnsw`` indexes; an ``ivfpq`` index gives back its compressed approximation.

        Args:
            docnos: The documents.
            who: Names the caller in the error.
            instead: What to use for documents outside the index, for the error.

        Raises:
            KeyError: When some docnos are not in the index.
        """
        from pyterrier_shallow._corpus import docno_positions
        from pyterrier_shallow.dense._stored_vectors import reconstruct

        if self._positions is None:
            self._positions = docno_positions(self.docnos())
        positions = self._positions
        ids = np.fromiter((positions.get(docno, -1) for docno in docnos), dtype=np.int64, count=len(docnos))
        missing = ids < 0
        if missing.any():
            first = [docnos[i] for i in np.flatnonzero(missing)[:3]]
            advice = f", or use {instead}" if instead else ""
            raise KeyError(
                f"{who}: {int(missing.sum())} of {len(docnos)} candidates are not in {self!r} (first: {first}); "
                f"rerank candidates of the indexed corpus{advice}"
            )
        if len(ids) == 0:
            return np.empty((0, self.dimension), dtype=np.float32)
        return reconstruct(self.faiss_index(), ids)

    def scorer(self, encoder: BiEncoder, *, anchor=None, verbose: bool = False) -> pt.Transformer:
        """Returns a transformer that scores candidates by ``encoder``'s query vector and their stored vectors.

        The candidates come from any first stage (e.g. BM25) but must be documents of this index; no document is
        encoded at query time, so reranking costs one query encoding and a dot product per candidate.

        Args:
            encoder: The model that built the index (another model is an error).
            anchor: Mixes the first stage's ``score`` into the cosine: ``True`` with equal weights (the untrained
                hybrid), an :class:`~pyterrier_shallow.Anchor` with its own, ``None`` or ``False`` not at all.
            verbose: Show a progress bar while encoding queries.
        """
        from pyterrier_shallow.dense._stored_vector_scorer import StoredVectorScorer

        return StoredVectorScorer(self, encoder, anchor=anchor, verbose=verbose)

    def check_encoder(self, encoder: BiEncoder, *, strict: bool = False) -> None:
        """Checks that ``encoder`` can query this index.

        Args:
            encoder: The encoder whose vectors meet the indexed ones.
            strict: Raise, rather than warn, when the index was built by another model.

        Raises:
            ValueError: When ``encoder`` makes vectors of another size than the indexed ones, or, with ``strict``,
                when it is another model than the one that built the index.
        """
        built_with = self.meta.get("model")
        if encoder.dimension != self.dimension:
            raise ValueError(
                f"{encoder!r} makes {encoder.dimension}-dimensional vectors, but {self!r} holds "
                f"{self.dimension}-dimensional ones (built with {built_with!r}); query it with that model"
            )
        if built_with is not None and built_with != encoder.name:
            message = (f"{self!r} was built with {built_with!r} but is queried with {encoder.name!r}; "
                       "scores are meaningful only when both sides come from the same model")
            if strict:
                raise ValueError(f"{message}: index the corpus with that model (e.g. poly.bi_encoder)")
            warn_user(message)

    def _forget(self) -> None:
        """Drops what was read from disk, after the directory was replaced."""
        self._meta = self._faiss = self._docnos = self._positions = None

    def indexer(
        self,
        encoder: BiEncoder | None = None,
        *,
        index_type: str = "flat",
        chunk_size: int = 4096,
        overwrite: bool = False,
        verbose: bool = True,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        nlist: int | None = None,
        pq_m: int | None = None,
        pq_nbits: int = 8,
        train_size: int = 100_000,
    ) -> pt.Indexer:
        """Returns an indexer that encodes a corpus and writes this index.

        Documents are read, encoded and added ``chunk_size`` at a time, so memory holds one chunk of texts and the
        FAISS index itself (all vectors for ``flat`` and ``hnsw``; ``pq_m`` bytes a document for ``ivfpq``, whose
        quantisers are first trained on the first ``train_size`` documents).

        Args:
            encoder: The model that encodes documents (its ``text_field`` names the text); ``None``: each document
                carries its vector as ``doc_vec``, as after ``model.doc_encoder() >> index.indexer()``.
            index_type: ``"flat"`` (exact), ``"hnsw"`` or ``"ivfpq"``.
            chunk_size: Documents encoded and added at a time.
            overwrite: Replace an existing index at ``path`` (only once the new one is complete).
            verbose: Show a progress bar over documents.
            hnsw_m: HNSW: links a node (memory grows by about ``8 * hnsw_m`` bytes a document).
            ef_construction: HNSW: candidate list while building.
            nlist: IVF-PQ: inverted lists (``None``: about ``4 * sqrt(train sample)``).
            pq_m: IVF-PQ: bytes a document at 8 bits (``None``: up to ``dimension / 4``).
            pq_nbits: IVF-PQ: bits a sub-quantiser code.
            train_size: IVF-PQ: training sample (the first documents of the corpus).
        """
        from pyterrier_shallow.dense._faiss_indexer import FaissIndexer
        from pyterrier_shallow.dense._faiss_types import IndexSpec

        spec = IndexSpec(
            index_type=index_type,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            nlist=nlist,
            pq_m=pq_m,
            pq_nbits=pq_nbits,
            train_size=train_size,
        )
        return FaissIndexer(self, encoder, spec, chunk_size=chunk_size, overwrite=overwrite, verbose=verbose)

    def retriever(
        self,
        encoder: BiEncoder | None = None,
        *,
        num_results: int = 1000,
        ef_search: int | None = None,
        nprobe: int | None = None,
        query_batch_size: int = 1024,
        threads: int | None = None,
        verbose: bool = False,
    ) -> pt.Transformer:
        """Returns a transformer that retrieves the ``num_results`` nearest documents of each query.

        Queries come as ``query`` text (encoded by ``encoder``) or as ``query_vec``. ``retriever % k`` searches for
        ``k`` results directly.

        Args:
            encoder: The model that built the index (``None``: the input must carry ``query_vec``).
            num_results: Documents returned a query.
            ef_search: HNSW: candidate list while searching (``None``: 128; at least ``num_results`` is used).
            nprobe: IVF-PQ: inverted lists searched (``None``: 32).
            query_batch_size: Queries searched at once.
            threads: FAISS search threads (``None``: FAISS's default, one a core). One thread is much faster for a
                query or two at a time on a busy machine, where threads wait on each other: exact search of 11k
                documents took 64 ms with 2 threads and 1.3 ms with 1 on a shared 2-core machine.
            verbose: Show a progress bar over query batches.
        """
        from pyterrier_shallow.dense._faiss_retriever import FaissRetriever

        if encoder is not None:
            self.check_encoder(encoder)
        return FaissRetriever(
            self,
            encoder,
            num_results=num_results,
            ef_search=ef_search,
            nprobe=nprobe,
            query_batch_size=query_batch_size,
            threads=threads,
            verbose=verbose,
        )


def write_meta(directory: Path, meta: dict) -> None:
    """Writes ``pt_meta.json`` into ``directory`` (the last file of a build, so that it marks completeness)."""
    with open(directory / META_FILE, "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=2)
