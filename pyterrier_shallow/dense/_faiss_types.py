"""The FAISS index types a FaissIndex can hold: building them, training them and their search parameters."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import faiss
import numpy as np

from pyterrier_shallow._warnings import warn_user

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
"""``flat``: exact inner-product search; ``hnsw``: a graph over full vectors; ``ivfpq``: inverted lists of
product-quantised codes (small, approximate)."""

DEFAULT_EF_SEARCH = 128
DEFAULT_NPROBE = 32


@dataclass(frozen=True)
class IndexSpec:
    """How to build an index.

    Attributes:
        index_type: One of :data:`INDEX_TYPES`.
        hnsw_m: HNSW: neighbours a node links to (memory grows by about ``8 * hnsw_m`` bytes a document).
        ef_construction: HNSW: the candidate list while building (higher: better graph, slower build).
        nlist: IVF-PQ: the number of inverted lists (``None``: about ``4 * sqrt(n)`` for the training sample of
            ``n`` documents, with at least 39 training points a list).
        pq_m: IVF-PQ: sub-quantisers, i.e. bytes a document at 8 bits (``None``: the largest divisor of the
            dimension up to ``dimension / 4``, i.e. 96 for 384 dimensions).
        pq_nbits: IVF-PQ: bits per sub-quantiser code.
        train_size: IVF-PQ: how many documents (the first ones of the corpus) train the quantisers.
    """

    index_type: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    nlist: int | None = None
    pq_m: int | None = None
    pq_nbits: int = 8
    train_size: int = 100_000

    def __post_init__(self):
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"unknown index_type {self.index_type!r}; choose one of {list(INDEX_TYPES)}")
        for name in ("hnsw_m", "ef_construction", "pq_nbits", "train_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("nlist", "pq_m"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def needs_training(self) -> bool:
        """Whether vectors must be seen before any can be added."""
        return self.index_type == "ivfpq"

    def as_meta(self) -> dict:
        """The options that matter for this index type, for ``pt_meta.json``."""
        keys = {"flat": (), "hnsw": ("hnsw_m", "ef_construction"), "ivfpq": ("nlist", "pq_m", "pq_nbits", "train_size")}
        return {key: value for key, value in asdict(self).items() if key in keys[self.index_type]}


def new_index(spec: IndexSpec, dimension: int) -> faiss.Index:
    """Returns an empty inner-product index of the given type (untrained for IVF-PQ; see :func:`train_index`)."""
    if spec.index_type == "flat":
        return faiss.IndexFlatIP(dimension)
    if spec.index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        return index
    raise ValueError("IVF-PQ indexes are made by train_index(), from a training sample")


def train_index(spec: IndexSpec, sample: np.ndarray) -> tuple[faiss.Index, IndexSpec]:
    """Builds and trains an IVF-PQ index on ``sample`` and returns it with the resolved options.

    Raises:
        ValueError: When the sample is too small for the quantisers, or ``pq_m`` does not divide the dimension.
    """
    count, dimension = sample.shape
    pq_m = spec.pq_m or max(m for m in range(1, max(1, dimension // 4) + 1) if dimension % m == 0)
    if dimension % pq_m:
        raise ValueError(f"pq_m={pq_m} must divide the vector dimension {dimension}")
    nlist = spec.nlist or max(1, min(round(4 * math.sqrt(count)), count // 39))
    needed = max(nlist, 2**spec.pq_nbits)
    if count < needed:
        raise ValueError(
            f"IVF-PQ with nlist={nlist} and pq_nbits={spec.pq_nbits} needs at least {needed} training documents, "
            f"but only {count} were seen; index a larger corpus, lower nlist/pq_nbits, or use index_type='flat' "
            "or 'hnsw' for a corpus this small"
        )
    advised = 39 * max(nlist, 2**spec.pq_nbits)
    if count < advised:
        warn_user(
            f"IVF-PQ trained on {count} documents; FAISS advises at least {advised} for nlist={nlist} and "
            f"pq_nbits={spec.pq_nbits}, so its codes may be coarse (raise train_size, or lower nlist/pq_nbits)"
        )
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFPQ(quantizer, dimension, nlist, pq_m, spec.pq_nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1  # warned above, once
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    resolved = IndexSpec(index_type="ivfpq", nlist=nlist, pq_m=pq_m, pq_nbits=spec.pq_nbits, train_size=spec.train_size)
    return index, resolved


def check_search_options(index_type: str, *, ef_search: int | None, nprobe: int | None) -> None:
    """Raises a ``ValueError`` for a search option that does not apply to ``index_type`` or is below 1."""
    for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if ef_search is not None and index_type != "hnsw":
        raise ValueError(f"ef_search applies to HNSW indexes; this one is {index_type!r}")
    if nprobe is not None and index_type != "ivfpq":
        raise ValueError(f"nprobe applies to IVF-PQ indexes; this one is {index_type!r}")


def search_parameters(index: faiss.Index, *, ef_search: int | None, nprobe: int | None) -> faiss.SearchParameters:
    """Returns per-call search parameters for ``index`` (HNSW: ``efSearch``; IVF: ``nprobe``), or ``None``."""
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(efSearch=ef_search or DEFAULT_EF_SEARCH)
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(nprobe=min(nprobe or DEFAULT_NPROBE, index.nlist))
    return None
