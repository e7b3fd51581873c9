"""Training a poly-encoder's codes over a frozen bi-encoder: softmax cross-entropy with hard and in-batch negatives."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyterrier as pt
import torch

from pyterrier_shallow.poly.poly_encoder import PolyEncoder, pad_tokens
from pyterrier_shallow.train.data import TrainingGroup, TrainingSource
from pyterrier_shallow.train.validation import RerankValidation


@dataclass
class PolyTrainConfig:
    """Hyper-parameters of training the codes (all recorded in the training card).

    Attributes:
        steps: Optimizer steps.
        queries_per_step: Queries (groups of a positive and k negatives) per step.
        num_negatives: k hard negatives per query.
        in_batch_negatives: Also score each query against the other queries' texts of the step.
        lr: Peak learning rate (AdamW), reached after ``warmup_steps`` and decayed linearly to zero.
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW weight decay on the codes.
        loss_scale: Multiplies scores before the softmax (document vectors are unit-length, so raw scores span a
            narrow range); it changes no ranking.
        eval_every: Validate every this many steps; the best validated codes are kept.
        seed: Seeds the sampling of groups.
    """

    steps: int = 500
    queries_per_step: int = 16
    num_negatives: int = 7
    in_batch_negatives: bool = True
    lr: float = 5e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    loss_scale: float = 1.0
    eval_every: int = 100
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "queries_per_step", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_negatives < 0:
            raise ValueError(f"num_negatives must be non-negative, got {self.num_negatives}")
        if self.num_negatives == 0 and not self.in_batch_negatives:
            raise ValueError("with no hard negatives, in_batch_negatives must be on")


class FrozenEncodings:
    """Caches a frozen encoder's outputs: token outputs of queries and vectors of texts, each encoded once.

    Share one between several :func:`train_codes` runs over the same encoder (e.g. for several numbers of codes).

    Args:
        poly: A poly-encoder whose bi-encoder does the encoding.
    """

    def __init__(self, poly: PolyEncoder):
        self.poly = poly
        self.query_tokens: dict[str, np.ndarray] = {}
        self.doc_vectors: dict[str, np.ndarray] = {}

    def add(self, queries: Sequence[str], texts: Sequence[str]) -> None:
        """Encodes the queries and texts not seen before."""
        new_queries = list(dict.fromkeys(query for query in queries if query not in self.query_tokens))
        if new_queries:
            for query, tokens in zip(new_queries, self.poly.bi_encoder.encode_tokens(new_queries, "query",
                                                                                      verbose=False), strict=True):
                self.query_tokens[query] = tokens
        new_texts = list(dict.fromkeys(text for text in texts if text not in self.doc_vectors))
        if new_texts:
            for text, vector in zip(new_texts, self.poly.bi_encoder.encode_docs(new_texts, verbose=False),
                                    strict=True):
                self.doc_vectors[text] = vector

    def score_pairs(self, queries: list[str], texts: list[str]) -> np.ndarray:
        """Scores (query, text) pairs with the poly-encoder, encoding each text once across calls."""
        self.add(queries, texts)
        return self.poly.score_pairs(queries, np.stack([self.doc_vectors[text] for text in texts]))


def train_codes(
    poly: PolyEncoder,
    source: TrainingSource,
    *,
    config: PolyTrainConfig | None = None,
    validation: RerankValidation | None = None,
    encodings: FrozenEncodings | None = None,
    verbose: bool = True,
) -> dict:
    """Trains ``poly``'s codes in place (the encoder stays frozen) and returns a training card.

    Each step draws ``queries_per_step`` groups (a query, its positive and k negatives) from ``source`` and
    minimises the softmax cross-entropy of the positive among the group's texts and, with in-batch negatives, the
    other groups' texts too. Encoder outputs are computed once per distinct query and text and then reused, so
    a step costs little more than encoding the texts it has not seen before. With ``validation``, the codes are
    measured every ``eval_every`` steps (and before training) and the best are kept.

    Args:
        poly: The poly-encoder whose codes are trained.
        source: Training groups (``pyterrier_shallow.train`` sources: rankings with BM25 negatives, pairs,
            pseudo-queries...).
        config: Hyper-parameters.
        validation: Held-out queries to select the best codes on.
        encodings: A cache of the encoder's outputs to use and fill (``None``: a new one).
        verbose: Show a progress bar.

    Returns:
        The training card: configuration, data, validation curve, best step and time taken.
    """
    config = config or PolyTrainConfig()
    rng = np.random.default_rng(config.seed)
    if encodings is None:
        encodings = FrozenEncodings(poly)
    elif encodings.poly.bi_encoder is not poly.bi_encoder:
        raise ValueError("encodings must come from the same bi-encoder as the poly-encoder")
    encodings.poly = poly
    codes = poly.codes
    optimizer = torch.optim.AdamW(codes.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(config.warmup_steps, config.steps))
    curve, best = [], (-np.inf, 0, copy.deepcopy(codes.state_dict()))
    started = time.perf_counter()

    def validate(step: int) -> None:
        nonlocal best
        if validation is None:
            return
        codes.eval()
        value = validation.evaluate(encodings.score_pairs)
        curve.append({"step": step, validation.metric: value})
        if value > best[0]:
            best = (value, step, copy.deepcopy(codes.state_dict()))

    validate(0)
    losses = []
    progress = pt.tqdm(range(1, config.steps + 1), desc="training codes", unit="step", disable=not verbose)
    for step in progress:
        groups = [source.sample(rng, config.num_negatives) for _ in range(config.queries_per_step)]
        codes.train()
        loss = _step_loss(codes, groups, encodings, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if verbose:
            progress.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if step % config.eval_every == 0 or step == config.steps:
            validate(step)
    if validation is not None:
        codes.load_state_dict(best[2])
    else:
        best = (None, config.steps, None)
    codes.eval()
    return {
        "model": "poly-encoder",
        "encoder": poly.bi_encoder.name,
        "encoder_frozen": True,
        "num_codes": codes.num_codes,
        "scaled": codes.scaled,
        "config": asdict(config),
        "data": source.describe(),
        "loss": {"name": "softmax-ce", "in_batch_negatives": config.in_batch_negatives},
        "validation": None if validation is None else {**validation.describe(), "curve": curve},
        "best_step": best[1],
        "train_loss": {"first_20": float(np.mean(losses[:20])), "last_20": float(np.mean(losses[-20:]))},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _step_loss(codes, groups: list[TrainingGroup], encodings: FrozenEncodings, config: PolyTrainConfig):
    queries = [group.query for group in groups]
    texts = [text for group in groups for text in group.texts]
    encodings.add(queries, texts)
    hidden, mask = pad_tokens([encodings.query_tokens[query] for query in queries])
    query_vectors = codes.query_vectors(hidden, mask)  # (queries, m, dimension)
    docs = torch.from_numpy(np.stack([encodings.doc_vectors[text] for text in texts]))
    sizes = [len(group.texts) for group in groups]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if config.in_batch_negatives:
        scores = codes.score(query_vectors, docs.expand(len(groups), -1, -1))  # (queries, all texts)
        targets = torch.as_tensor(starts, dtype=torch.long)
        return torch.nn.functional.cross_entropy(scores * config.loss_scale, targets)
    losses = []
    for index, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        scores = codes.score(query_vectors[index], docs[start : start + size])
        losses.append(torch.nn.functional.cross_entropy(scores[None] * config.loss_scale, torch.zeros(1).long()))
    return torch.stack(losses).mean()


def _warmup_then_linear(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
