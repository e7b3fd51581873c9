"""Term weights of a gated cross-encoder's token-match term: an inverse document frequency per vocabulary entry."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def idf_term_weights(tokenizer, texts: Iterable[str], *, max_length: int = 512, batch_size: int = 1024) -> torch.Tensor:
    """BM25's inverse document frequency of every vocabulary entry over ``texts``, zero for special tokens.

    ``log(1 + (N - df + 0.5) / (df + 0.5))``, with ``df`` the number of texts holding the token; a token no text
    holds gets the weight of ``df = 0`` (the rarest). The weights are a prior fixed when the model is made, so that
    the model carries them to collections it never saw.

    Args:
        tokenizer: The model's (fast) tokenizer.
        texts: The corpus, e.g. the documents of the training collections.
        max_length: Tokens counted per text.
        batch_size: Texts tokenized at once.

    Returns:
        ``(vocab,)`` float32 weights.

    Raises:
        ValueError: When ``texts`` holds no text.
    """
    vocab = len(tokenizer)
    counts = np.zeros(vocab, dtype=np.int64)
    total = 0
    batch: list[str] = []

    def count(chunk: list[str]) -> None:
        encoded = tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        for ids in encoded:
            counts[np.unique(np.asarray(ids, dtype=np.int64))] += 1

    for text in texts:
        if not isinstance(text, str) or not text.strip():
            continue
        batch.append(text)
        total += 1
        if len(batch) == batch_size:
            count(batch)
            batch = []
    if batch:
        count(batch)
    if total == 0:
        raise ValueError("idf_term_weights needs at least one non-empty text")
    weights = np.log1p((total - counts + 0.5) / (counts + 0.5)).astype(np.float32)
    weights[np.asarray(tokenizer.all_special_ids, dtype=np.int64)] = 0.0
    return torch.from_numpy(weights)


def use_corpus_term_weights(reranker, texts: Iterable[str], *, max_length: int = 512):
    """Weighs a gated reranker's token-match term by the inverse document frequencies of ``texts`` (in place).

    A shipped model carries the weights of the collections it was trained on; on another domain those weigh its
    terms wrongly. Pass the documents of the collection being ranked (e.g. ``d["text"] for d in
    dataset.get_corpus_iter()``) to weigh terms as that collection does.

    Args:
        reranker: A :class:`~pyterrier_shallow.CrossEncoder` whose model is a gated cross-encoder with the term.
        texts: The collection's documents.
        max_length: Tokens counted per text.

    Returns:
        The same reranker.

    Raises:
        ValueError: When the reranker's model has no token-match term.
    """
    network = reranker.network
    if not getattr(network.config, "match_term", False):
        raise ValueError(f"{reranker!r} has no token-match term to weigh (a gated model made with match_term=True)")
    network.set_term_weights(idf_term_weights(reranker.tokenizer, texts, max_length=max_length))
    return reranker
