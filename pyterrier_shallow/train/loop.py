"""The training loop: AdamW with warm-up and linear decay, exact gradient accumulation, validation, resumption."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyterrier as pt
import torch

from .._hf import choose_device
from ..anchor import Anchor
from ._forward import PairForward
from .anchor_mix import LearnedAnchor
from .card import CARD_FILE, build_card, saved_gated_parameters, write_card
from .checkpoint import load_state, publish_files, save_model_dir
from .data import TrainingGroup, TrainingSource
from .losses import GBCELoss, GroupLoss
from .model_init import head_parameter_names, load_cross_encoder, prepare_tokenizer, read_init_info
from .validation import RerankValidation

WORK_DIR = "_training"


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (all recorded in the training card).

    Attributes:
        steps: Optimizer steps.
        queries_per_step: Queries (groups of 1 + k pairs) per step.
        num_negatives: k, negatives per query.
        lr: Peak learning rate of the encoder.
        head_lr: Peak learning rate of the classification head, or of a gated model's gates (``None``: ``lr``); a
            fresh head learns faster.
        scale_lr: Peak learning rate of a gated model's score scale (``None``: ``head_lr``).
        weight_decay: AdamW weight decay (not applied to biases and normalisation weights).
        warmup_steps: Linear warm-up steps, then linear decay to zero at ``steps``.
        max_grad_norm: Gradient clipping norm (``None``: no clipping).
        micro_batch_size: Pairs per forward pass; a step's pairs are accumulated over as many passes as needed.
        query_length: The most tokens kept of a query.
        doc_length: The most tokens kept of a text.
        eval_every: Validate (and checkpoint) every this many steps.
        patience: Stop after this many validations without improvement (``None``: never stop early).
        min_delta: The least gain that counts as an improvement.
        checkpoint_every: Save a resumable checkpoint every this many steps (``None``: ``eval_every``).
        seed: Seeds the sampling of groups and the dropout masks (each step from ``(seed, step)``).
        amp: bfloat16 autocast on CUDA (the CPU always trains in float32).
        freeze_embeddings: Keep the token embeddings fixed (less optimizer state and time; a regulariser on little
            data).
        window: Train under the sparse attention pattern (see :class:`pyterrier_shallow.AttentionPattern`) with
            document tokens attending to this many neighbours each side (``None``: dense attention). Validation
            runs under the same pattern, and the saved weights are an ordinary checkpoint for
            :class:`pyterrier_shallow.SparseCrossEncoder`.
        anchor: Train an anchored model: the loss sees ``a * z(first-stage score) + b * z(model score)`` per group,
            with ``a`` and ``b`` learnt from these initial values (the teacher's mix, say) at ``scale_lr``; the saved
            model keeps them in ``anchor.json`` and validation mixes them in alike (``None``: no anchor). Every
            group then needs first-stage scores.
    """

    steps: int = 1000
    queries_per_step: int = 8
    num_negatives: int = 15
    lr: float = 3e-5
    head_lr: float | None = None
    scale_lr: float | None = None
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_grad_norm: float | None = 1.0
    micro_batch_size: int = 64
    query_length: int = 32
    doc_length: int = 224
    eval_every: int = 100
    patience: int | None = None
    min_delta: float = 0.0
    checkpoint_every: int | None = None
    seed: int = 0
    amp: bool = True
    freeze_embeddings: bool = False
    window: int | None = None
    anchor: tuple[float, float] | None = None

    def __post_init__(self):
        for name in ("steps", "queries_per_step", "num_negatives", "micro_batch_size", "query_length", "doc_length",
                     "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or any(rate is not None and rate <= 0 for rate in (self.head_lr, self.scale_lr)):
            raise ValueError("learning rates must be positive")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must lie in [0, steps={self.steps}], got {self.warmup_steps}")
        if self.window is not None and self.window < 0:
            raise ValueError(f"window must be non-negative, got {self.window}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")
        if self.anchor is not None:
            self.anchor = tuple(float(value) for value in self.anchor)
            if len(self.anchor) != 2 or not all(np.isfinite(value) and value > 0 for value in self.anchor):
                raise ValueError(f"anchor must be two positive weights (first stage, model), got {self.anchor}")


@dataclass
class TrainingResult:
    """What a training run produced.

    Attributes:
        output_dir: The trained model's ``save_pretrained`` directory, with ``training_card.json`` and ``README.md``.
        steps: The optimizer steps done.
        best_step: The step of the saved model (the best validation score, or the last step without validation).
        best_score: Its validation score, if validated.
        curve: ``{"step", "loss", "<metric>"}`` per validation (``loss``: mean training loss since the previous one).
        stopped_early: Whether patience ran out.
    """

    output_dir: Path
    steps: int
    best_step: int
    best_score: float | None
    curve: list[dict] = field(default_factory=list)
    stopped_early: bool = False


_NO_DECAY = ("gates", "query_gates", "scale", "match_weight")


def _optimizer(model, config: TrainConfig, anchor: LearnedAnchor | None = None) -> torch.optim.AdamW:
    head = set(head_parameter_names(model))
    head_lr = config.head_lr if config.head_lr is not None else config.lr
    scale_lr = config.scale_lr if config.scale_lr is not None else head_lr
    rates = {"encoder": config.lr, "head": head_lr, "scale": scale_lr}
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = "scale" if name in ("scale", "match_weight") else "head" if name in head else "encoder"
            no_decay = name.endswith("bias") or "norm" in name.lower() or name in _NO_DECAY
            groups.setdefault((part, no_decay), []).append(param)
    if anchor is not None:
        groups[("scale", True)] = [*groups.get(("scale", True), []), *anchor.parameters()]
    return torch.optim.AdamW(
        [
            {"params": params, "lr": rates[part], "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (part, no_decay), params in sorted(groups.items())
        ]
    )


def _schedule(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        return max(0.0, (config.steps - step) / max(1, config.steps - config.warmup_steps))

    return factor


STOP_FILE = "stop"
"""A file of this name in ``OUT/_training`` ends a run after its current step: the run then finishes as if it had
stopped early (validated checkpoints kept, the best published with its card)."""


def _config_differences(saved: dict, current: dict) -> list[str]:
    return [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in current.items() if saved.get(key) != value]


def _sample_step(source: TrainingSource, config: TrainConfig, step: int, needs_teacher: bool) -> list[TrainingGroup]:
    rng = np.random.default_rng([config.seed, step])
    groups = [source.sample(rng, config.num_negatives) for _ in range(config.queries_per_step)]
    if needs_teacher and any(group.teacher_scores is None for group in groups):
        raise ValueError("the loss distils a teacher, but a training source gives groups without teacher scores")
    if config.anchor is not None and any(group.first_stage_scores is None for group in groups):
        raise ValueError(
            "an anchored model trains on groups with first-stage scores, but a training source gives groups "
            "without them (distil from candidates scored by a first stage, e.g. --teacher hybrid)"
        )
    return groups


def train(
    model,
    source: TrainingSource,
    output_dir: str | os.PathLike,
    *,
    loss: GroupLoss | None = None,
    config: TrainConfig | None = None,
    validation: RerankValidation | None = None,
    device: str | torch.device | None = None,
    keep_checkpoints: bool = False,
    command: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
    verbose: bool = True,
) -> TrainingResult:
    """Trains a one-logit cross-encoder and saves it, with its training card, as a ``save_pretrained`` directory.

    Work in progress lives in ``output_dir/_training``: ``last/`` (a resumable checkpoint every
    ``config.checkpoint_every`` steps) and ``best/`` (the best validated model). Calling ``train`` again with the same
    arguments after an interruption resumes from ``last/``; a changed configuration raises a ``ValueError``.

    Args:
        model: A hub id or directory (e.g. made by :func:`init_cross_encoder`), or a ``(model, tokenizer)`` tuple.
            The tokenizer's fixed padding and truncation, if any, are removed (in place) before it is saved.
        source: Draws the training groups (see :mod:`pyterrier_shallow.train.data`).
        output_dir: Where the trained model goes.
        loss: The loss (default: gBCE with t = 0.75).
        config: Hyper-parameters (default: :class:`TrainConfig` ()).
        validation: Held-out queries to validate on every ``config.eval_every`` steps and keep the best model.
        device: Where to train (default: CUDA when present).
        keep_checkpoints: Keep ``output_dir/_training`` after success.
        command: The command line recorded in the card (default: ``sys.argv``).
        on_step: Called with ``(step, loss)`` after each step (and after its checkpoint, if any).
        verbose: Show progress bars.
    """
    loss = loss if loss is not None else GBCELoss()
    config = config if config is not None else TrainConfig()
    output_dir = Path(output_dir)
    work = output_dir / WORK_DIR
    if (output_dir / CARD_FILE).exists() and not work.exists():
        raise FileExistsError(f"{output_dir} already holds a trained model; choose another output_dir or remove it")
    device = choose_device(device)
    settings = {**dataclasses.asdict(config), "loss": loss.describe(), "data": source.describe()}

    resumed = load_state(work / "last")
    if resumed is not None:
        folder, state = resumed
        differences = _config_differences(state["settings"], settings)
        if differences:
            raise ValueError(
                f"{work / 'last'} was saved with other settings ({'; '.join(differences)}); resume with the same "
                f"ones, or remove {work} to start over"
            )
        net, tokenizer, _ = load_cross_encoder(folder)
        base = state["base"]
    elif isinstance(model, tuple):
        net, tokenizer = model
        base = {"checkpoint": getattr(net.config, "_name_or_path", None) or type(net).__name__}
        state = None
    else:
        net, tokenizer, info = load_cross_encoder(model)
        base = {**info, "init": read_init_info(model) if Path(str(model)).is_dir() else None}
        state = None

    positions = getattr(net.config, "max_position_embeddings", None) or 512
    prepare_tokenizer(tokenizer, max_length=min(int(tokenizer.model_max_length), int(positions)))
    run = _Run(net, tokenizer, config=config, device=device, work=work, validation=validation,
               saved={"settings": settings, "base": base}, state=state)
    run.train(source, loss, on_step=on_step, verbose=verbose)
    progress = run.progress

    final = work / "best" if validation is not None and (work / "best").is_dir() else work / "last"
    publish_files(final, output_dir)
    result = TrainingResult(
        output_dir=output_dir,
        steps=progress["step"],
        best_step=progress["best_step"] if validation is not None else progress["step"],
        best_score=progress["best_score"],
        curve=list(progress["curve"]),
        stopped_early=progress["stopped_early"],
    )
    card = build_card(
        result=result, config=config, loss=loss.describe(), base=base, data=source.describe(),
        validation=validation.describe() if validation is not None else None, device=str(device),
        amp=run.forward.amp, elapsed_s=progress["elapsed_s"], command=command or shlex.join(sys.argv),
        **saved_gated_parameters(output_dir),
        anchor=None if run.anchor is None else Anchor.load(output_dir).to_dict(),
    )
    write_card(output_dir, card)
    if not keep_checkpoints:
        shutil.rmtree(work, ignore_errors=True)
    return result


class _Run:
    """The state of one training run: model, optimizer, schedule, progress, and where checkpoints go."""

    def __init__(self, net, tokenizer, *, config: TrainConfig, device: torch.device, work: Path,
                 validation: RerankValidation | None, saved: dict, state: dict | None):
        net.to(device)
        if config.freeze_embeddings:
            net.get_input_embeddings().weight.requires_grad_(False)
        self.net, self.tokenizer, self.config, self.work, self.validation, self.saved = (
            net, tokenizer, config, work, validation, saved)
        scorer = net
        if config.window is not None:
            from ..sparse import AttentionPattern, SparseCrossEncoderModel

            scorer = SparseCrossEncoderModel(net, AttentionPattern(window=config.window))
        self.forward = PairForward(scorer, tokenizer, query_length=config.query_length, doc_length=config.doc_length,
                                   micro_batch_size=config.micro_batch_size, device=device, amp=config.amp)
        self.anchor = None
        if config.anchor is not None:
            self.anchor = LearnedAnchor(*config.anchor).to(device)
            if state is not None and state.get("anchor") is not None:
                self.anchor.load_state_dict(state["anchor"])
        self.optimizer = _optimizer(net, config, self.anchor)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(config))
        self.progress = {"step": 0, "best_step": 0, "best_score": None, "stale_evals": 0, "curve": [],
                         "window": [], "elapsed_s": 0.0, "stopped_early": False}
        self.fresh = state is None
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.progress = state["progress"]

    def checkpoint(self) -> None:
        """Saves a resumable checkpoint in ``_training/last``."""
        save_model_dir(self.work / "last", self.net, self.tokenizer, anchor=self.current_anchor(), state={
            **self.saved, "progress": self.progress,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "anchor": None if self.anchor is None else self.anchor.state_dict(),
        })

    def current_anchor(self):
        """The anchor as learnt so far (``None`` for a model without one)."""
        return None if self.anchor is None else self.anchor.anchor()

    def record(self, step: int) -> None:
        """Adds a point to the curve (mean loss since the last one, validation score) and keeps the best model."""
        window, progress = self.progress["window"], self.progress
        point = {"step": step, "loss": float(np.mean(window)) if window else None}
        progress["window"] = []
        if self.validation is not None:
            self.net.eval()
            score = self.validation.evaluate(lambda queries, texts: self.forward.score(queries, texts),
                                             anchor=self.current_anchor())
            self.net.train()
            point[self.validation.metric] = score
            if progress["best_score"] is None or score > progress["best_score"] + self.config.min_delta:
                progress.update(best_score=score, best_step=step, stale_evals=0)
                save_model_dir(self.work / "best", self.net, self.tokenizer, anchor=self.current_anchor())
            else:
                progress["stale_evals"] += 1
            if self.config.patience is not None and progress["stale_evals"] >= self.config.patience:
                progress["stopped_early"] = True
        progress["curve"].append(point)

    def train(self, source: TrainingSource, loss: GroupLoss, *, on_step, verbose: bool) -> None:
        """Runs the remaining steps (validating, checkpointing, stopping early as configured)."""
        config, progress = self.config, self.progress
        started = time.monotonic() - progress["elapsed_s"]
        self.net.train()
        if self.fresh:
            self.work.mkdir(parents=True, exist_ok=True)
            if self.validation is not None:
                self.record(0)
            self.checkpoint()
        checkpoint_every = config.checkpoint_every or config.eval_every
        bar = pt.tqdm(total=config.steps, initial=progress["step"], desc="training", unit="step", disable=not verbose)
        while progress["step"] < config.steps and not progress["stopped_early"]:
            step = progress["step"] + 1
            torch.manual_seed(config.seed * 1_000_003 + step)
            groups = _sample_step(source, config, step, loss.needs_teacher)
            value = _train_step(self.forward, groups, loss, config, self.anchor)
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), config.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            progress["step"] = step
            progress["window"].append(value)
            progress["elapsed_s"] = time.monotonic() - started
            if step % config.eval_every == 0 or step == config.steps:
                self.record(step)
            if (self.work / STOP_FILE).exists():  # asked to end now, keeping the best checkpoint so far
                progress["stopped_early"] = True
            if step % checkpoint_every == 0 or step == config.steps or progress["stopped_early"]:
                self.checkpoint()
            bar.update(1)
            bar.set_postfix(_postfix(value, progress, self.validation))
            if on_step is not None:
                on_step(step, value)
        bar.close()


def _train_step(forward: PairForward, groups: list[TrainingGroup], loss: GroupLoss, config: TrainConfig,
                anchor: LearnedAnchor | None = None) -> float:
    queries = [group.query for group in groups for _ in group.texts]
    texts = [text for group in groups for text in group.texts]
    pool_sizes = torch.tensor([group.pool_size for group in groups], dtype=torch.float32, device=forward.device)
    teacher = None
    if loss.needs_teacher:
        teacher = torch.tensor([group.teacher_scores for group in groups], dtype=torch.float32, device=forward.device)
    mix = lambda logits: logits  # noqa: E731 - the model's scores as they are, without an anchor
    if anchor is not None:
        first_stage = torch.tensor([group.first_stage_scores for group in groups], dtype=torch.float32,
                                   device=forward.device)
        mix = lambda logits: anchor(logits, first_stage)  # noqa: E731
    return forward.backward(
        queries, texts, group_size=config.num_negatives + 1,
        loss_fn=lambda logits: loss(mix(logits), pool_sizes=pool_sizes, teacher_scores=teacher),
    )


def _postfix(value: float, progress: dict, validation: RerankValidation | None) -> dict:
    postfix = {"loss": f"{value:.4f}"}
    if validation is not None and progress["best_score"] is not None:
        postfix[f"best {validation.metric}"] = f"{progress['best_score']:.4f}@{progress['best_step']}"
    return postfix
