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
        train_encoder: Also fine-tune the encoder (both sides: it makes the documents' vectors too), as the paper
            did; otherwise only the codes learn, over cached encoder outputs (the cheap mode).
        encoder_lr: Peak learning rate of the encoder when it is fine-tuned.
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
    train_encoder: bool = False
    encoder_lr: float = 2e-5

    def __post_init__(self):
        for name in ("steps", "queries_per_step", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_negatives < 0:
            raise ValueError(f"num_negatives must be non-negative, got {self.num_negatives}")
        if self.lr <= 0 or self.encoder_lr <= 0:
            raise ValueError("learning rates must be positive")
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
    """Trains ``poly``'s codes in place (and, with ``config.train_encoder``, its encoder) and returns a training card.

    Each step draws ``queries_per_step`` groups (a query, its positive and k negatives) from ``source`` and
    minimises the softmax cross-entropy of the positive among the group's texts and, with in-batch negatives, the
    other groups' texts too. With the encoder frozen (the default), its outputs are computed once per distinct query
    and text and then reused, so a step costs little more than encoding the texts it has not seen before; when the
    encoder is fine-tuned, every step runs it forward and backward, and an index built before training must be
    built again with the trained encoder. With ``validation``, the model is measured every ``eval_every`` steps (and
    before training) and the best is kept.

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
    encoder = poly.bi_encoder.model if config.train_encoder else None
    if encoder is not None:
        codes.to(poly.bi_encoder.device)  # beside the encoder while training; back on the CPU afterwards
    groups_of_parameters = [{"params": list(codes.parameters()), "lr": config.lr}]
    if encoder is not None:
        groups_of_parameters.append({"params": [p for p in encoder.parameters() if p.requires_grad],
                                     "lr": config.encoder_lr})
    optimizer = torch.optim.AdamW(groups_of_parameters, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(config.warmup_steps, config.steps))

    def snapshot() -> dict:
        state = {"codes": copy.deepcopy(codes.state_dict())}
        if encoder is not None:
            state["encoder"] = {name: value.detach().clone() for name, value in encoder.state_dict().items()}
        return state

    def score_fresh(queries: list[str], texts: list[str]) -> np.ndarray:
        return poly.score_pairs(queries, poly.bi_encoder.encode_docs(texts, verbose=False))

    curve, best = [], (-np.inf, 0, snapshot())
    started = time.perf_counter()

    def validate(step: int) -> None:
        nonlocal best
        if validation is None:
            return
        codes.eval()
        if encoder is not None:
            encoder.eval()
        value = validation.evaluate(score_fresh if encoder is not None else encodings.score_pairs)
        curve.append({"step": step, validation.metric: value})
        if value > best[0]:
            best = (value, step, snapshot())

    validate(0)
    losses = []
    desc = "training poly-encoder" if encoder is not None else "training codes"
    progress = pt.tqdm(range(1, config.steps + 1), desc=desc, unit="step", disable=not verbose)
    for step in progress:
        groups = [source.sample(rng, config.num_negatives) for _ in range(config.queries_per_step)]
        codes.train()
        if encoder is not None:
            encoder.train()
            loss = _step_loss_fine_tuning(poly, groups, config)
        else:
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
        codes.load_state_dict(best[2]["codes"])
        if encoder is not None:
            encoder.load_state_dict(best[2]["encoder"])
    else:
        best = (None, config.steps, None)
    codes.eval().to("cpu")
    if encoder is not None:
        encoder.eval()
    return {
        "model": "poly-encoder",
        "encoder": poly.bi_encoder.name,
        "encoder_frozen": not config.train_encoder,
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
    """The step's loss over the cached outputs of the frozen encoder."""
    queries = [group.query for group in groups]
    texts = [text for group in groups for text in group.texts]
    encodings.add(queries, texts)
    hidden, mask = pad_tokens([encodings.query_tokens[query] for query in queries])
    docs = torch.from_numpy(np.stack([encodings.doc_vectors[text] for text in texts]))
    return _group_loss(codes, codes.query_vectors(hidden, mask), docs, groups, config)


def _step_loss_fine_tuning(poly: PolyEncoder, groups: list[TrainingGroup], config: PolyTrainConfig):
    """The same loss as :func:`_step_loss`, with the encoder run forward (and so trained) on every text."""
    bi_encoder, codes = poly.bi_encoder, poly.codes
    hidden, mask = bi_encoder.token_states([group.query for group in groups], "query")
    texts = [text for group in groups for text in group.texts]
    docs = bi_encoder.pooled(*bi_encoder.token_states(texts, "doc")).float()
    return _group_loss(codes, codes.query_vectors(hidden.float(), mask), docs, groups, config)


def _group_loss(codes, query_vectors: torch.Tensor, docs: torch.Tensor, groups: list[TrainingGroup],
                config: PolyTrainConfig) -> torch.Tensor:
    """Softmax cross-entropy of each group's positive (its first text) among its texts, or all the step's texts.

    Args:
        codes: The poly-encoder's codes.
        query_vectors: ``(queries, m, dimension)``, one row per group.
        docs: ``(texts, dimension)``: every group's texts, group after group.
        groups: The step's groups.
        config: Says whether other groups' texts are negatives, and the score scale.
    """
    sizes = [len(group.texts) for group in groups]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if config.in_batch_negatives:
        scores = codes.score(query_vectors, docs.expand(len(groups), -1, -1))  # (queries, all texts)
        targets = torch.as_tensor(starts, dtype=torch.long, device=scores.device)
        return torch.nn.functional.cross_entropy(scores * config.loss_scale, targets)
    losses = [
        torch.nn.functional.cross_entropy(
            codes.score(query_vectors[index], docs[start : start + size])[None] * config.loss_scale,
            torch.zeros(1, dtype=torch.long, device=docs.device),
        )
        for index, (start, size) in enumerate(zip(starts, sizes, strict=True))
    ]
    return torch.stack(losses).mean()


def _warmup_then_linear(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
