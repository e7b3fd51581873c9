"""PolyEncoder: a bi-encoder's document vectors scored by m learned codes that attend over the query's tokens."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyterrier as pt
import torch

from pyterrier_shallow.dense.bi_encoder import MINILM_ID, BiEncoder
from pyterrier_shallow.poly.codes import PolyCodes

CONFIG_FILE = "poly_config.json"
CODES_FILE = "codes.safetensors"
CARD_FILE = "training_card.json"
ENCODER_FOLDER = "encoder"
QUERY_DELTA_FILE = "query_delta.safetensors"
FORMAT = "pyterrier-shallow-poly-encoder"
DEFAULT_POLY_ENCODER_DIR = Path(__file__).resolve().parent.parent / "models" / "poly-encoder"
"""Where the package's trained default poly-encoder lives."""


class PolyEncoder:
    """A poly-encoder over a single-vector bi-encoder (Humeau et al., ICLR 2020).

    Documents are the bi-encoder's vectors, computed ahead of time (e.g. held in a :class:`FaissIndex`), so
    reranking needs no document encoding at query time. A query is encoded into its token outputs ``h_j``; m codes
    ``c_i`` attend over them into ``y_i = sum_j softmax_j(c_i . h_j) h_j``; a document vector ``d`` then attends over
    those: ``y_q = sum_i softmax_i(d . y_i) y_i`` and ``score = d . y_q``. The object is a factory of transformers:
    :meth:`reranker` scores candidates with vectors stored in an index, :meth:`text_scorer` encodes their text.

    Queries may have a tower of their own (:attr:`query_encoder`, fine-tuned while the documents' tower stays
    frozen): documents are still the vectors of :attr:`bi_encoder`, so an index it built serves unchanged.

    A saved poly-encoder is a directory: ``poly_config.json``, ``codes.safetensors``, the training card and, when the
    query tower was fine-tuned, ``query_delta.safetensors`` (its changed layers in fp16 over the named encoder), or,
    when the whole encoder was, ``encoder/``; otherwise the configuration names the encoder (a hub id or a path).

    Example::

        poly = pyterrier_shallow.PolyEncoder()  # the package's trained default, over all-MiniLM-L6-v2
        index = pyterrier_shallow.FaissIndex("./nfcorpus.faiss")
        pipeline = index.retriever(poly.bi_encoder) % 100 >> poly.reranker(index)

    Args:
        model: A saved poly-encoder directory (``None``: the package's default).
        bi_encoder: Use this encoder instead of the one the directory names (it must make vectors of the codes'
            size).
        device: ``"cpu"``, ``"cuda"``... for the encoder built from the directory (``None``: CUDA when present).
        query_length: The most tokens of an encoded query (``None``: the saved setting, else the encoder's).
        doc_length: The most tokens of an encoded document (``None``: the saved setting, else the encoder's).
        verbose: Show progress bars.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        bi_encoder: BiEncoder | None = None,
        device: str | torch.device | None = None,
        query_length: int | None = None,
        doc_length: int | None = None,
        verbose: bool = False,
    ):
        folder = Path(model) if model is not None else DEFAULT_POLY_ENCODER_DIR
        config = read_config(folder, shipped=model is None)
        codes = PolyCodes(config["num_codes"], config["dimension"], scaled=config["scaled"])
        codes.load_state_dict(_load_codes(folder / CODES_FILE))
        if bi_encoder is not None and (folder / ENCODER_FOLDER).is_dir():
            warnings.warn(
                f"{folder} holds its own fine-tuned encoder; scoring with {bi_encoder!r} instead gives other scores",
                stacklevel=2,
            )
        encoder_dir = folder / ENCODER_FOLDER
        source = str(encoder_dir) if encoder_dir.is_dir() else config["encoder"]

        def encoder(delta: Path | None = None) -> BiEncoder:
            return BiEncoder(
                source,
                pooling=config.get("pooling"),
                normalize=config.get("normalize"),
                query_length=query_length or config.get("query_length"),
                doc_length=doc_length or config.get("doc_length"),
                device=device,
                verbose=verbose,
                delta=delta,
            )

        if bi_encoder is None:
            bi_encoder = encoder()
        query_encoder = None
        if config.get("query_delta"):
            query_encoder = encoder(folder / config["query_delta"])
            if bi_encoder.name != query_encoder.name:
                raise ValueError(f"{folder}'s query tower was tuned from {query_encoder.name}; its documents must be "
                                 f"that encoder's vectors, not {bi_encoder!r}'s")
        self._setup(bi_encoder, codes, verbose=verbose, query_encoder=query_encoder)
        self.path = str(folder)
        self.card = _read_json(folder / CARD_FILE)

    @classmethod
    def fresh(
        cls,
        bi_encoder: BiEncoder | None = None,
        *,
        query_encoder: BiEncoder | None = None,
        num_codes: int = 16,
        scaled: bool = False,
        init_std: float = 0.05,
        seed: int = 0,
        verbose: bool = False,
    ) -> PolyEncoder:
        """Returns an untrained poly-encoder over ``bi_encoder`` (``None``: all-MiniLM-L6-v2, offline).

        Its codes start small (``init_std``), where it ranks almost as the bi-encoder's mean pooling would (exactly,
        as ``init_std`` goes to zero); train the codes with :func:`pyterrier_shallow.poly.train_codes`.
        ``query_encoder`` gives queries a tower of their own (``None``: ``bi_encoder`` encodes them too).
        """
        bi_encoder = bi_encoder if bi_encoder is not None else BiEncoder(verbose=verbose)
        poly = cls.__new__(cls)
        codes = PolyCodes(num_codes, bi_encoder.dimension, scaled=scaled, init_std=init_std, seed=seed)
        poly._setup(bi_encoder, codes, verbose=verbose, query_encoder=query_encoder)
        poly.path, poly.card = None, None
        return poly

    def _setup(
        self, bi_encoder: BiEncoder, codes: PolyCodes, *, verbose: bool, query_encoder: BiEncoder | None = None
    ) -> None:
        for encoder in (bi_encoder, query_encoder):
            if encoder is not None and encoder.dimension != codes.dimension:
                raise ValueError(
                    f"{encoder!r} makes {encoder.dimension}-dimensional vectors but the codes have "
                    f"{codes.dimension} dimensions; load the poly-encoder with the encoder it was trained with"
                )
        self.bi_encoder = bi_encoder
        self.query_encoder = query_encoder if query_encoder is not None else bi_encoder
        self.codes = codes.eval()
        self.verbose = verbose

    def __repr__(self) -> str:
        where = self.path if self.path is not None else "untrained"
        return f"PolyEncoder({where!r}, m={self.num_codes}, scaled={self.scaled}, encoder={self.bi_encoder.name!r})"

    @property
    def num_codes(self) -> int:
        """m, the number of codes."""
        return self.codes.num_codes

    def __getstate__(self) -> dict:
        if getattr(self, "_trained_in_memory", False):
            import pickle

            raise pickle.PicklingError(
                "this poly-encoder's encoder weights were trained in memory and would be unpickled without them; "
                "save it (poly.save(folder)) and pickle PolyEncoder(folder) instead"
            )
        return self.__dict__.copy()

    @property
    def own_query_tower(self) -> bool:
        """Whether queries have an encoder of their own (documents keep :attr:`bi_encoder`'s vectors)."""
        return self.query_encoder is not self.bi_encoder

    @property
    def scaled(self) -> bool:
        """Whether the attention logits are divided by ``sqrt(dimension)``."""
        return self.codes.scaled

    # ----------------------------------------------------------------------------------------------- scoring
    def encode_queries(self, queries: Sequence[str], *, verbose: bool | None = None) -> np.ndarray:
        """Returns each query's m code vectors, float32 of shape ``(len(queries), m, dimension)``."""
        if len(queries) == 0:
            return np.empty((0, self.num_codes, self.codes.dimension), dtype=np.float32)
        tokens = self.query_encoder.encode_tokens(list(queries), "query", verbose=verbose)
        return self.code_vectors(tokens).numpy()

    @torch.no_grad()
    def code_vectors(self, tokens: Sequence[np.ndarray]) -> torch.Tensor:
        """Returns the code vectors ``(len(tokens), m, dimension)`` of queries' token outputs (one array each)."""
        hidden, mask = pad_tokens(tokens)
        device = self.codes.codes.device
        return self.codes.query_vectors(hidden.to(device), mask.to(device)).cpu()

    @torch.no_grad()
    def score(self, query_vectors: np.ndarray, doc_vectors: np.ndarray) -> np.ndarray:
        """Scores the documents ``(n, dimension)`` against one query's code vectors ``(m, dimension)``."""
        device = self.codes.codes.device
        scores = self.codes.score(torch.as_tensor(query_vectors, device=device),
                                  torch.as_tensor(doc_vectors, dtype=torch.float32, device=device))
        return scores.cpu().numpy().astype(np.float32)

    def score_pairs(
        self, queries: Sequence[str], doc_vectors: np.ndarray, *, verbose: bool = False
    ) -> np.ndarray:
        """Scores each (query, document vector) pair; each distinct query is encoded once.

        Args:
            queries: One query per pair.
            doc_vectors: ``(pairs, dimension)`` document vectors.
            verbose: Show progress bars over query encoding and scoring.
        """
        if len(queries) != len(doc_vectors):
            raise ValueError(f"{len(queries)} queries but {len(doc_vectors)} document vectors")
        scores = np.empty(len(queries), dtype=np.float32)
        if len(queries) == 0:
            return scores
        if doc_vectors.shape[1] != self.codes.dimension:
            raise ValueError(
                f"document vectors have {doc_vectors.shape[1]} dimensions, the poly-encoder {self.codes.dimension}"
            )
        codes, unique = _factorize(queries)
        query_vectors = self.encode_queries(unique, verbose=verbose)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(unique) + 1))
        for index in pt.tqdm(range(len(unique)), desc="PolyEncoder", unit="query", disable=not verbose):
            rows = order[bounds[index] : bounds[index + 1]]
            scores[rows] = self.score(query_vectors[index], doc_vectors[rows])
        return scores

    # ----------------------------------------------------------------------------------------------- factories
    def reranker(self, index, *, anchor=None, verbose: bool | None = None) -> pt.Transformer:
        """Returns a transformer that scores candidates with their vectors read from ``index`` (a FaissIndex).

        ``anchor`` mixes in the first stage's ``score`` (``None``: as this poly-encoder's folder says; ``True``,
        ``False`` or an :class:`~pyterrier_shallow.Anchor` otherwise).
        """
        from pyterrier_shallow.poly._transformers import PolyIndexReranker

        return PolyIndexReranker(self, index, anchor=anchor, verbose=self.verbose if verbose is None else verbose)

    def text_scorer(self, *, anchor=None, verbose: bool | None = None) -> pt.Transformer:
        """Returns a transformer that scores candidates by encoding their text (or using their ``doc_vec``)."""
        from pyterrier_shallow.poly._transformers import PolyTextScorer

        return PolyTextScorer(self, anchor=anchor, verbose=self.verbose if verbose is None else verbose)

    # ----------------------------------------------------------------------------------------------- saving
    def save(self, path: str | os.PathLike, *, card: dict | None = None, save_encoder: bool = False) -> None:
        """Writes the poly-encoder to the directory ``path`` (atomically: the directory appears complete).

        Args:
            path: The directory (replaced if it exists).
            card: A training card to store beside the codes.
            save_encoder: Copy the encoder's weights into ``encoder/`` (needed when they were fine-tuned);
                otherwise the configuration names the encoder. A query tower of its own is always saved, as the
                fp16 tensors in which it differs from the documents' encoder.
        """
        from safetensors.torch import save_file

        from pyterrier_shallow._io import atomic_write_dir

        config = {
            "format": FORMAT,
            "version": 1,
            "num_codes": self.num_codes,
            "dimension": self.codes.dimension,
            "scaled": self.scaled,
            "encoder": self.bi_encoder.name,
            "pooling": self.bi_encoder.pooling,
            "normalize": self.bi_encoder.normalize,
            "query_length": self.bi_encoder.query_length,
            "doc_length": self.bi_encoder.doc_length,
            "query_delta": QUERY_DELTA_FILE if self.own_query_tower else None,
        }
        if self.own_query_tower:
            from pyterrier_shallow.dense.bi_encoder import changed_tensors

            if save_encoder:
                raise ValueError("save_encoder copies one encoder; this poly-encoder has a query tower of its own")
            query_delta = changed_tensors(self.query_encoder.model, self.bi_encoder.model)

        def fill(folder: Path) -> None:
            save_file({"codes": self.codes.codes.detach().float().contiguous()}, str(folder / CODES_FILE))
            (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf8")
            if card is not None:
                (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf8")
            if save_encoder:
                self._save_encoder(folder / ENCODER_FOLDER)
            if self.own_query_tower:
                save_file(query_delta, str(folder / QUERY_DELTA_FILE))

        atomic_write_dir(path, fill)
        self.path, self.card = str(path), card

    def _save_encoder(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        from pyterrier_shallow._hf import load_pretrained, quiet_transformers

        kwargs = {"subfolder": self.bi_encoder.layout.subfolder} if self.bi_encoder.layout.subfolder else {}
        tokenizer = load_pretrained(AutoTokenizer, self.bi_encoder.layout.weights, **kwargs)
        with quiet_transformers():
            self.bi_encoder.model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def read_config(folder: Path, *, shipped: bool = False) -> dict:
    """Reads and checks a poly-encoder directory's configuration."""
    if not (folder / CONFIG_FILE).is_file() or not (folder / CODES_FILE).is_file():
        if shipped:
            raise FileNotFoundError(
                f"no default poly-encoder ships in {folder}; pass a trained poly-encoder directory, or start one with "
                "PolyEncoder.fresh() and pyterrier_shallow.poly.train_codes"
            )
        raise FileNotFoundError(f"{folder} is not a poly-encoder directory (it needs {CONFIG_FILE} and {CODES_FILE})")
    config = _read_json(folder / CONFIG_FILE)
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE} is not a {FORMAT} configuration")
    for key in ("num_codes", "dimension", "scaled", "encoder"):
        if key not in config:
            raise ValueError(f"{folder / CONFIG_FILE} lacks {key!r}")
    if config["encoder"] == MINILM_ID:
        config["encoder"] = None
    return config


def _load_codes(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {"codes": load_file(str(path))["codes"]}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf8")) if path.is_file() else None


def pad_tokens(tokens: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads per-query token outputs into ``(queries, tokens, dimension)`` and a boolean mask."""
    width = max(len(item) for item in tokens)
    dimension = tokens[0].shape[1]
    hidden = torch.zeros(len(tokens), width, dimension)
    mask = torch.zeros(len(tokens), width, dtype=torch.bool)
    for row, item in enumerate(tokens):
        hidden[row, : len(item)] = torch.from_numpy(np.asarray(item, dtype=np.float32))
        mask[row, : len(item)] = True
    return hidden, mask


def _factorize(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    codes, unique = pd.factorize(pd.Series(list(values), dtype=object), sort=False)
    return codes, list(unique)
