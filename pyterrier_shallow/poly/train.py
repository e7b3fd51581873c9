"""Training a poly-encoder: its codes, its query tower or its whole encoder, from labels or a teacher's scores."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyterrier as pt
import torch

from pyterrier_shallow.poly.cli_args import KEEP_MODES, POLY_LOSSES, TUNE_MODES
from pyterrier_shallow.poly.poly_encoder import PolyEncoder, pad_tokens
from pyterrier_shallow.train.data import TrainingGroup, TrainingSource
from pyterrier_shallow.train.losses import soft_label_loss
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
        keep: Which model to keep with validation: ``"best"`` (the best validated step) or ``"last"`` (the last
            step, the curve still recorded: to compare settings trained alike when validation is noisy).
        seed: Seeds the sampling of groups.
        tune: What learns besides the codes: ``"codes"`` nothing (over cached encoder outputs, the cheap mode);
            ``"query"`` a query tower of its own, copied from the encoder, while documents keep the frozen
            encoder's vectors (cached; an index built before training still serves); ``"both"`` the one encoder
            of both sides, as the paper did (documents must then be indexed again with the trained encoder).
        query_layers: With ``tune="query"``, fine-tune only the top N layers of the query tower (``None``: all of
            them); the token embeddings always stay frozen.
        encoder_lr: Peak learning rate of the encoder or query tower when it is fine-tuned.
        loss: ``"softmax-ce"`` (the group's positive, its first text, against the rest) or ``"soft-label"``
            (listwise distillation: KL divergence from the softmax of the teacher's scores over each group; the
            groups must carry ``teacher_scores``, and in-batch negatives are not used).
        temperature: The teacher's softmax temperature for ``"soft-label"``.
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
    tune: str = "codes"
    query_layers: int | None = None
    encoder_lr: float = 2e-5
    loss: str = "softmax-ce"
    temperature: float = 1.0
    keep: str = "best"

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
        if self.tune not in TUNE_MODES:
            raise ValueError(f"tune must be one of {TUNE_MODES}, got {self.tune!r}")
        if self.loss not in POLY_LOSSES:
            raise ValueError(f"loss must be one of {POLY_LOSSES}, got {self.loss!r}")
        if self.loss == "soft-label" and self.num_negatives < 1:
            raise ValueError("soft-label distillation needs groups of at least two texts (num_negatives >= 1)")
        if self.query_layers is not None and (self.query_layers < 1 or self.tune != "query"):
            raise ValueError("query_layers is a positive number of layers, and only with tune='query'")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.keep not in KEEP_MODES:
            raise ValueError(f"keep must be one of {KEEP_MODES}, got {self.keep!r}")


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

    def add_vectors(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Takes the vectors of texts encoded elsewhere by the same encoder (e.g. read back from its index)."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        for text, vector in zip(texts, vectors, strict=True):
            self.doc_vectors.setdefault(text, np.asarray(vector, dtype=np.float32))

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
    """Trains ``poly``'s codes in place (and what ``config.tune`` names) and returns a training card.

    Each step draws ``queries_per_step`` groups (a query, its positive and k negatives) from ``source`` and
    minimises the softmax cross-entropy of the positive among the group's texts and, with in-batch negatives, the
    other groups' texts too, or (``config.loss="soft-label"``) the KL divergence from a teacher's scores of each
    group. With the encoder frozen (the default), its outputs are computed once per distinct query and text and then
    reused, so a step costs little more than encoding the texts it has not seen before. With ``tune="query"`` the
    poly-encoder gets a query tower of its own, run forward and backward on the step's queries, while the documents'
    vectors stay the frozen encoder's (computed once per text). With ``tune="both"`` every step runs the encoder on
    every text, and an index built before training must be built again with the trained encoder. With
    ``validation``, the model is measured every ``eval_every`` steps (and before training) and the best is kept.

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
    encoder = None
    if config.tune == "both":
        encoder = poly.bi_encoder.model
    elif config.tune == "query":
        if not poly.own_query_tower:
            poly.query_encoder = query_tower_copy(poly.bi_encoder)
        encoder = poly.query_encoder.model
        _freeze_below(encoder, config.query_layers)
    if encoder is not None:
        poly._trained_in_memory = True  # pickling would reload the untrained weights: it is refused
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

    def score_query_tower(queries: list[str], texts: list[str]) -> np.ndarray:
        encodings.add([], texts)
        return poly.score_pairs(queries, np.stack([encodings.doc_vectors[text] for text in texts]))

    scorer = {"codes": encodings.score_pairs, "query": score_query_tower, "both": score_fresh}[config.tune]

    curve, best = [], (-np.inf, 0, snapshot())
    started = time.perf_counter()

    def validate(step: int) -> None:
        nonlocal best
        if validation is None:
            return
        codes.eval()
        if encoder is not None:
            encoder.eval()
        value = validation.evaluate(scorer)
        curve.append({"step": step, validation.metric: value})
        keeps = value > best[0] if config.keep == "best" else step == config.steps
        if keeps:
            best = (value, step, snapshot())

    validate(0)
    losses = []
    desc = {"codes": "training codes", "query": "training query tower", "both": "training poly-encoder"}[config.tune]
    progress = pt.tqdm(range(1, config.steps + 1), desc=desc, unit="step", disable=not verbose)
    for step in progress:
        groups = [source.sample(rng, config.num_negatives) for _ in range(config.queries_per_step)]
        codes.train()
        if encoder is not None:
            encoder.train()
        if config.tune == "both":
            loss = _step_loss_fine_tuning(poly, groups, config)
        elif config.tune == "query":
            loss = _step_loss_query_tower(poly, groups, encodings, config)
        else:
            loss = _step_loss(codes, groups, encodings, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if verbose:
            shown = {"loss": f"{np.mean(losses[-20:]):.4f}"}
            if curve:
                shown[validation.metric] = f"{curve[-1][validation.metric]:.4f}"
            progress.set_postfix(shown)
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
        "encoder_frozen": config.tune == "codes",
        "tuned": {"codes": "codes", "query": "codes and query tower", "both": "codes and encoder"}[config.tune],
        "num_codes": codes.num_codes,
        "scaled": codes.scaled,
        "config": asdict(config),
        "data": source.describe(),
        "loss": ({"name": "soft-label", "temperature": config.temperature} if config.loss == "soft-label"
                 else {"name": "softmax-ce", "in_batch_negatives": config.in_batch_negatives}),
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


def _step_loss_query_tower(poly: PolyEncoder, groups: list[TrainingGroup], encodings: FrozenEncodings,
                           config: PolyTrainConfig):
    """The step's loss with the query tower run forward (and so trained) and the documents' cached vectors."""
    texts = [text for group in groups for text in group.texts]
    encodings.add([], texts)
    hidden, mask = poly.query_encoder.token_states([group.query for group in groups], "query")
    docs = torch.from_numpy(np.stack([encodings.doc_vectors[text] for text in texts]))
    return _group_loss(poly.codes, poly.codes.query_vectors(hidden.float(), mask), docs, groups, config)


def query_tower_copy(bi_encoder):
    """A query tower of its own: a copy of ``bi_encoder`` with its own weights (documents keep the original)."""
    weights = bi_encoder.model  # loaded first, so the copy shares its tokenizers and resolved lengths
    tower = copy.copy(bi_encoder)
    tower._model = copy.deepcopy(weights)
    tower._backends = dict(bi_encoder._backends)
    return tower


def _freeze_below(encoder: torch.nn.Module, top_layers: int | None) -> None:
    """Freezes the token embeddings and, with ``top_layers``, every layer below the top ``top_layers``."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(top_layers is None)
    for parameter in encoder.embeddings.parameters():
        parameter.requires_grad_(False)
    if top_layers is not None:
        layers = encoder.encoder.layer
        if top_layers > len(layers):
            raise ValueError(f"query_layers={top_layers}, but the encoder has {len(layers)} layers")
        for layer in layers[len(layers) - top_layers :]:
            for parameter in layer.parameters():
                parameter.requires_grad_(True)


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
    if config.loss == "soft-label":
        if any(group.teacher_scores is None for group in groups):
            raise ValueError("soft-label distillation needs groups with teacher scores (a distillation source)")
        if len(set(sizes)) != 1:
            raise ValueError("soft-label distillation needs groups of one size")
        logits = torch.stack([codes.score(query_vectors[index], docs[start : start + size])
                              for index, (start, size) in enumerate(zip(starts, sizes, strict=True))])
        teacher = torch.tensor([group.teacher_scores for group in groups], dtype=logits.dtype, device=logits.device)
        return soft_label_loss(logits * config.loss_scale, teacher, temperature=config.temperature)
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
