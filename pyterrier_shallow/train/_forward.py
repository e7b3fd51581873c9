"""Forward passes of a cross-encoder over (query, text) pairs, in micro-batches, with exact gradient accumulation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .._batching import length_sorted_batches
from .._pair_tokenizer import EncodedPairs, PairTokenizer


class PairForward:
    """Scores (query, text) pairs with a sequence-classification model, ``micro_batch_size`` pairs per pass.

    Args:
        model: A ``*ForSequenceClassification`` model with one logit.
        tokenizer: Its fast tokenizer.
        query_length: The most tokens kept of a query.
        doc_length: The most tokens kept of a text.
        micro_batch_size: The most pairs in one forward pass.
        device: Where the model runs.
        amp: Use bfloat16 autocast (on CUDA only; the CPU always runs in float32).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        query_length: int,
        doc_length: int,
        micro_batch_size: int,
        device: torch.device,
        amp: bool = True,
    ):
        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be at least 1, got {micro_batch_size}")
        probe = PairTokenizer(tokenizer, query_length=query_length, doc_length=doc_length, max_length=10**6)
        max_length = query_length + doc_length + probe.num_special_tokens
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions is not None and max_length > positions:
            raise ValueError(
                f"query_length + doc_length + {probe.num_special_tokens} special tokens = {max_length} exceeds the "
                f"model's {positions} positions"
            )
        self.pairs = PairTokenizer(tokenizer, query_length=query_length, doc_length=doc_length, max_length=max_length)
        self.model = model
        self.micro_batch_size = micro_batch_size
        self.device = device
        self.amp = amp and device.type == "cuda"

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _logits(self, encoded: EncodedPairs, indices: np.ndarray) -> torch.Tensor:
        inputs = {name: tensor.to(self.device) for name, tensor in self.pairs.collate(encoded, indices).items()}
        with self._autocast():
            logits = self.model(**inputs).logits
        return logits.reshape(-1).float()

    def _batches(self, encoded: EncodedPairs, batch_size: int) -> list[np.ndarray]:
        return length_sorted_batches(encoded.lengths, batch_size=batch_size)

    @torch.no_grad()
    def score(self, queries: Sequence[str], texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Returns the float32 logit of every pair, without gradients (the caller sets train/eval mode)."""
        scores = np.zeros(len(queries), dtype=np.float32)
        if len(queries) == 0:
            return scores
        encoded = self.pairs.encode(queries, texts)
        for indices in self._batches(encoded, batch_size or self.micro_batch_size):
            scores[indices] = self._logits(encoded, indices).cpu().numpy()
        return scores

    def backward(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        group_size: int,
        loss_fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> float:
        """Adds to the parameters' gradients those of ``loss_fn(logits)``, logits shaped ``(groups, group_size)``.

        When the pairs fit one micro-batch this is a plain forward and backward pass. Otherwise the logits are first
        computed without gradients, the loss's gradient with respect to them is taken, and each micro-batch is run
        again (with the same dropout masks) to back-propagate its share: the gradient is exact for any loss, also
        those that do not decompose over pairs (softmax cross-entropy, MarginMSE).

        Returns:
            The loss value.
        """
        total = len(queries)
        if total == 0 or total % group_size:
            raise ValueError(f"{total} pairs do not form groups of {group_size}")
        encoded = self.pairs.encode(queries, texts)
        batches = self._batches(encoded, self.micro_batch_size)
        if len(batches) == 1:
            order = batches[0]
            logits = torch.empty(total, device=self.device)
            logits = logits.index_put((torch.as_tensor(order, device=self.device),), self._logits(encoded, order))
            loss = loss_fn(logits.view(-1, group_size))
            loss.backward()
            return float(loss.detach())
        states, logits = [], torch.zeros(total, device=self.device)
        with torch.no_grad():
            for indices in batches:
                states.append(_rng_state(self.device))
                logits[torch.as_tensor(indices, device=self.device)] = self._logits(encoded, indices)
        after = _rng_state(self.device)
        leaf = logits.detach().requires_grad_(True)
        loss = loss_fn(leaf.view(-1, group_size))
        loss.backward()
        grad = leaf.grad
        for indices, state in zip(batches, states, strict=True):
            _set_rng_state(self.device, state)
            chunk = self._logits(encoded, indices)
            chunk.backward(grad[torch.as_tensor(indices, device=self.device)])
        _set_rng_state(self.device, after)
        return float(loss.detach())


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
