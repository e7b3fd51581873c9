"""DocStateIndex: a folder of documents' token states below the layers of a gated cross-encoder that read the query."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from pyterrier_shallow._corpus import check_documents, chunks, docno_positions
from pyterrier_shallow._io import atomic_write_dir
from pyterrier_shallow._pair_tokenizer import PairTokenizer
from pyterrier_shallow._path_artifact import PathArtifact
from pyterrier_shallow._warnings import warn_user
from pyterrier_shallow.precomputed._split import document_states, split_layer
from pyterrier_shallow.sparse._segments import DocTokens, PairLayout, pad_rows

META_FILE = "pt_meta.json"
DOCNOS_FILE = "docnos.npy"
OFFSETS_FILE = "offsets.npy"
DIGESTS_FILE = "text_digests.npy"
STATE_FILES = {"residual": "residual.bin", "queries": "queries.bin"}
STORED_DTYPES = ("float16", "float32")
DEFAULT_DOC_LENGTH = 128


def model_fingerprint(model: torch.nn.Module, split: int) -> str:
    """A digest of the weights that the stored states depend on.

    They are the embeddings, the layers below ``split``, and the attention of layer ``split`` with its output
    projection's weight (not its feed-forward block, so that models differing only above the stored states, a
    pruned feed-forward block among them, share an index).
    """
    hasher = hashlib.sha256()
    prefixes = ("bert.embeddings.", *(f"bert.encoder.layer.{index}." for index in range(split)),
                f"bert.encoder.layer.{split}.attention.self.",
                f"bert.encoder.layer.{split}.attention.output.dense.weight")
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(prefixes):
            hasher.update(name.encode())
            hasher.update(tensor.detach().float().contiguous().numpy().tobytes())
    hasher.update(json.dumps({"doc_window": model.config.doc_window, "split": split}).encode())
    return hasher.hexdigest()[:20]


def text_digests(texts: list[str]) -> np.ndarray:
    """An 8-byte digest of each text, to tell a changed corpus from the indexed one."""
    return np.array([int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
                     for text in texts], dtype=np.uint64)


class DocStateIndex(PathArtifact):
    """Documents' token states where a gated cross-encoder starts reading the query, computed once per document.

    A gated cross-encoder whose lower layers do not read the query (made with ``cross_layers``, see
    :mod:`pyterrier_shallow.gated`) encodes a document the same way for every query up to its first reading layer.
    This index stores, for each document token, what that layer needs of it (``pyterrier_shallow.precomputed``), so
    that :meth:`reranker` runs only the layers that read the query. The folder holds ``pt_meta.json`` (the model,
    its fingerprint, the split layer, lengths and counts), ``docnos.npy``, ``offsets.npy`` (each document's first
    token row), ``text_digests.npy`` and two raw ``(tokens, hidden)`` arrays, memory-mapped when read. It appears
    only once complete (built beside ``path``, then renamed).

    Example::

        index = DocStateIndex("./vaswani.states")
        index.build(corpus_iter, model=pyterrier_shallow.precomputed.PRECOMPUTED_MODEL_DIR)
        pipeline = bm25 % 100 >> index.reranker()

    Args:
        path: The index folder.
    """

    ARTIFACT_TYPE = "doc_state_index"
    ARTIFACT_FORMAT = "gated-split"
    _REQUIRED_FILES = (DOCNOS_FILE, OFFSETS_FILE, DIGESTS_FILE, *STATE_FILES.values())
    _BUILD_HINT = "DocStateIndex(path).build(corpus_iter, model=...)"
    _REOPENED = ("_meta", "_arrays", "_positions")  # reopened by path where unpickled

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._meta: dict | None = None
        self._arrays: dict | None = None
        self._positions: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.meta["num_docs"])

    def built(self) -> bool:
        """Whether ``path`` holds a complete index."""
        return (self.path / META_FILE).is_file()

    # ---------------------------------------------------------------------------------------------------- reading
    def arrays(self) -> dict:
        """``offsets``, ``digests``, ``residual`` and ``queries``, memory-mapped and checked against the meta."""
        if self._arrays is None:
            meta = self.meta
            shape = (int(meta["num_tokens"]), int(meta["hidden_size"]))
            arrays = {
                "offsets": np.load(self.path / OFFSETS_FILE, mmap_mode="r"),
                "digests": np.load(self.path / DIGESTS_FILE, mmap_mode="r"),
            }
            for name, file in STATE_FILES.items():
                expected = shape[0] * shape[1] * np.dtype(meta["dtype"]).itemsize
                if (self.path / file).stat().st_size != expected:
                    raise ValueError(f"{self.path / file} holds {(self.path / file).stat().st_size} bytes, not the "
                                     f"{expected} of {shape} {meta['dtype']} states; the index is damaged")
                arrays[name] = np.memmap(self.path / file, dtype=meta["dtype"], mode="r", shape=shape)
            if len(arrays["offsets"]) != len(self) + 1 or int(arrays["offsets"][-1]) != shape[0]:
                raise ValueError(f"{self.path}: offsets.npy does not match pt_meta.json; the index is damaged")
            self._arrays = arrays
        return self._arrays

    def positions(self, docnos: list[str], *, who: str = "DocStateIndex") -> np.ndarray:
        """The index rows of ``docnos``.

        Raises:
            KeyError: When some are not in the index.
        """
        if self._positions is None:
            self._positions = docno_positions(np.load(self.path / DOCNOS_FILE, mmap_mode="r"))
            if len(self._positions) != len(self):
                raise ValueError(f"{self.path}: docnos.npy does not match pt_meta.json; the index is damaged")
        rows = np.fromiter((self._positions.get(docno, -1) for docno in docnos), dtype=np.int64, count=len(docnos))
        missing = rows < 0
        if missing.any():
            first = [docnos[i] for i in np.flatnonzero(missing)[:3]]
            raise KeyError(f"{who}: {int(missing.sum())} of {len(docnos)} candidates are not in {self!r} "
                           f"(first: {first}); rerank candidates of the indexed corpus, or index these documents")
        return rows

    def states(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stored ``residual`` and ``queries`` of documents ``rows`` (float32, one after another) and lengths."""
        arrays = self.arrays()
        offsets = arrays["offsets"]
        starts, ends = offsets[rows], offsets[rows + 1]
        spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
        lengths = torch.from_numpy((ends - starts).astype(np.int64))
        return self._gather(arrays["residual"], spans), self._gather(arrays["queries"], spans), lengths

    @staticmethod
    def _gather(stored: np.ndarray, spans: list[tuple[int, int]]) -> torch.Tensor:
        """The stored rows of ``spans``, one after another, as float32 (torch widens float16 faster than numpy)."""
        return torch.from_numpy(np.concatenate([stored[start:end] for start, end in spans])).float()

    def check_texts(self, rows: np.ndarray, texts: list[str], *, who: str = "DocStateIndex") -> None:
        """Raises ``ValueError`` when ``texts`` differ from the texts indexed at ``rows`` (the corpus changed)."""
        changed = np.flatnonzero(self.arrays()["digests"][rows] != text_digests(texts))
        if len(changed):
            raise ValueError(f"{who}: {len(changed)} of {len(texts)} candidates have another text than when "
                             f"{self!r} was built (first at row {int(changed[0])}); the corpus changed since: "
                             "build the index again, or pass check_text=False to score the indexed texts")

    # --------------------------------------------------------------------------------------------------- building
    def build(
        self,
        corpus_iter: Iterable[dict] | pd.DataFrame,
        model: str | os.PathLike | tuple | None = None,
        *,
        text_field: str = "text",
        doc_length: int | None = None,
        dtype: str = "float16",
        batch_tokens: int = 16384,
        chunk_size: int = 1024,
        overwrite: bool = False,
        verbose: bool = True,
    ) -> DocStateIndex:
        """Encodes a corpus up to the model's split layer and writes this index.

        Args:
            corpus_iter: Dicts (or a frame) with ``docno`` and ``text_field``.
            model: A gated cross-encoder folder (``None``: ``PRECOMPUTED_MODEL_DIR``, shipped with the package),
                or a ``(model, tokenizer)`` pair; its layers below the first that reads the query are run here.
            text_field: The field that holds the text.
            doc_length: The most tokens kept of a document (``None``: the model's trained length, or 128); the
                reranker scores exactly as the full model with this ``doc_length``.
            dtype: ``"float16"`` (half the disk, scores within about 1e-2) or ``"float32"`` (exact).
            batch_tokens: The most tokens (padding included) in one forward pass.
            chunk_size: Documents read and checked at a time.
            overwrite: Replace an existing index at ``path`` (only once the new one is complete).
            verbose: Show a progress bar over documents.

        Returns:
            This index.
        """
        from pyterrier_shallow.precomputed.reranker import load_model

        if dtype not in STORED_DTYPES:
            raise ValueError(f"dtype must be one of {STORED_DTYPES}, got {dtype!r}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it, or choose another "
                                  "path")
        if isinstance(corpus_iter, pd.DataFrame):
            corpus_iter = corpus_iter.to_dict("records")
        source, network, tokenizer = load_model(model)
        doc_length = doc_length or _trained_doc_length(source) or DEFAULT_DOC_LENGTH
        split = split_layer(network)
        pairs = PairTokenizer(tokenizer, query_length=1, doc_length=doc_length, max_length=doc_length + 4)
        layout = PairLayout.of(tokenizer)
        meta = {
            "type": self.ARTIFACT_TYPE, "format": self.ARTIFACT_FORMAT,
            "model": None if isinstance(source, tuple) else str(source),
            "fingerprint": model_fingerprint(network, split), "split_layer": split,
            "num_layers": int(network.config.num_hidden_layers), "hidden_size": int(network.config.hidden_size),
            "doc_length": int(doc_length), "doc_window": network.config.doc_window, "dtype": dtype,
        }

        def fill(folder: Path) -> None:
            counts = _write_states(folder, corpus_iter, network, pairs, layout, split, text_field=text_field,
                                   dtype=dtype, batch_tokens=batch_tokens, chunk_size=chunk_size, verbose=verbose)
            (folder / META_FILE).write_text(json.dumps({**meta, **counts}, indent=2) + "\n", encoding="utf-8")

        atomic_write_dir(self.path, fill)
        self._meta = self._arrays = self._positions = None
        truncated = self.meta["truncated_docs"]
        if truncated:
            warn_user(f"{self!r}: {truncated} of {len(self)} documents were longer than doc_length={doc_length} "
                      "tokens and were truncated (pt_meta.json records the count)")
        return self

    def reranker(self, model: str | os.PathLike | tuple | None = None, **kwargs) -> pt.Transformer:
        """A :class:`~pyterrier_shallow.precomputed.PrecomputedCrossEncoder` over this index.

        Args:
            model: The model that built the index (``None``: the folder it records).
            **kwargs: Passed on to the reranker (``anchor``, ``precision``, ``verbose``...).
        """
        from pyterrier_shallow.precomputed.reranker import PrecomputedCrossEncoder

        return PrecomputedCrossEncoder(self, model, **kwargs)


def index_for_model(model: str | os.PathLike | None, root: str | os.PathLike,
                    corpus_iter: Callable[[], Iterable[dict]], *, doc_length: int | None = None,
                    verbose: bool = False) -> DocStateIndex:
    """The index of ``model``'s states of a corpus under ``root``, named by the model's fingerprint, built if absent.

    Models whose stored states agree (e.g. the same model with a pruned feed-forward block) share one index, which
    records the folder of the model that built it: pass the model you mean to the reranker
    (``PrecomputedCrossEncoder(index, model)``), not ``None``.

    Args:
        model: A gated cross-encoder folder (``None``: ``PRECOMPUTED_MODEL_DIR``).
        root: The folder that holds a corpus's indexes.
        corpus_iter: Returns the corpus's documents (called only when the index is built).
        doc_length: The most tokens kept of a document (``None``: the model's trained length); an index per length.
        verbose: Show a progress bar while building.
    """
    from pyterrier_shallow.precomputed.reranker import load_model

    source, network, _ = load_model(model)
    name = model_fingerprint(network, split_layer(network)) + ("" if doc_length is None else f"-{doc_length}")
    index = DocStateIndex(Path(root) / name)
    if not index.built():
        index.build(corpus_iter(), source, doc_length=doc_length, verbose=verbose)
    return index


def _trained_doc_length(source: object) -> int | None:
    from pyterrier_shallow.cross_encoder import trained_lengths

    return trained_lengths(source).get("doc_length")


def _write_states(folder: Path, corpus_iter: Iterable[dict], model, pairs: PairTokenizer, layout: PairLayout,
                  split: int, *, text_field: str, dtype: str, batch_tokens: int, chunk_size: int,
                  verbose: bool) -> dict:
    """Writes docnos, offsets, digests and the two state arrays of a corpus into ``folder``; returns the counts."""
    from pyterrier_shallow._batching import length_sorted_batches

    seen: set[str] = set()
    docnos: list[str] = []
    lengths: list[int] = []
    digests: list[np.ndarray] = []
    truncated = 0
    files = {name: open(folder / file, "wb") for name, file in STATE_FILES.items()}  # noqa: SIM115 - closed below
    try:
        with pt.tqdm(desc="DocStateIndex", unit="doc", disable=not verbose) as progress:
            for chunk in chunks(corpus_iter, chunk_size):
                chunk_docnos, texts = check_documents(chunk, text_field, offset=len(docnos))
                repeated = [docno for docno in chunk_docnos if docno in seen]
                if repeated:
                    raise ValueError(f"duplicate docno(s) {repeated[:5]} in the corpus")
                seen.update(chunk_docnos)
                ids, cut = pairs.truncated_ids(texts, pairs.doc_length)
                truncated += int(cut.sum())
                rows = [row + [layout.doc_sep_id] for row in ids]
                chunk_lengths = np.array([len(row) + 1 for row in rows], dtype=np.int64)  # with [CLS]
                outputs: list = [None] * len(rows)
                for batch in length_sorted_batches(chunk_lengths, batch_size=len(rows), token_budget=batch_tokens):
                    token_ids, mask = pad_rows([rows[i] for i in batch.tolist()], layout.pad_id)
                    docs = DocTokens(torch.full((len(batch),), layout.cls_id), torch.full((len(batch),), 0),
                                     torch.from_numpy(token_ids), torch.zeros_like(torch.from_numpy(token_ids)),
                                     torch.from_numpy(mask), torch.zeros(len(batch), dtype=torch.long))
                    residual, queries = document_states(model, docs, split)
                    bounds = np.concatenate([[0], np.cumsum(chunk_lengths[batch])])
                    for position, document in enumerate(batch.tolist()):
                        part = slice(int(bounds[position]), int(bounds[position + 1]))
                        outputs[document] = (residual[part], queries[part])
                for residual, queries in outputs:
                    files["residual"].write(residual.numpy().astype(dtype).tobytes())
                    files["queries"].write(queries.numpy().astype(dtype).tobytes())
                docnos.extend(chunk_docnos)
                lengths.extend(chunk_lengths.tolist())
                digests.append(text_digests(texts))
                progress.update(len(chunk))
    finally:
        for handle in files.values():
            handle.close()
    if not docnos:
        raise ValueError("the corpus is empty: there is nothing to index")
    width = max(len(docno.encode("utf-8")) for docno in docnos)
    np.save(folder / DOCNOS_FILE, np.array([docno.encode("utf-8") for docno in docnos], dtype=f"S{width}"))
    np.save(folder / OFFSETS_FILE, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    np.save(folder / DIGESTS_FILE, np.concatenate(digests))
    return {"num_docs": len(docnos), "num_tokens": int(sum(lengths)), "truncated_docs": int(truncated)}
