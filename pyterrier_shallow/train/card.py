"""The training card saved beside a trained model: ``training_card.json`` and a short ``README.md``."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
from pathlib import Path

import torch
import transformers

from .._io import atomic_write_bytes, atomic_write_json
from ..gated.model import gate_summary

CARD_FILE = "training_card.json"
README_FILE = "README.md"


def build_card(
    *,
    result,
    config,
    loss: dict,
    base: dict,
    data: dict,
    validation: dict | None,
    device: str,
    amp: bool,
    elapsed_s: float,
    command: str,
    gates: list[dict] | None = None,
    query_gates: list[dict] | None = None,
    score_parameters: dict | None = None,
    anchor: dict | None = None,
) -> dict:
    """Gathers what a training run did into a JSON-serialisable dict.

    Args:
        result: The run's :class:`~pyterrier_shallow.train.loop.TrainingResult`.
        config: Its :class:`~pyterrier_shallow.train.loop.TrainConfig`.
        loss: The loss's description.
        base: What the model was initialised from.
        data: The training source's description.
        validation: The validation's description, if any.
        device: The device trained on.
        amp: Whether bfloat16 autocast was used.
        elapsed_s: Training time in seconds.
        command: The command line that ran it.
        gates: For a gated cross-encoder, per layer the mean and the largest ``|tanh(g)|`` of the saved model.
        query_gates: The same for a symmetric gated model's query-side gates.
        score_parameters: For a gated cross-encoder, the saved model's learnt ``scale`` (and ``match_weight``).
        anchor: For an anchored model, its saved :class:`~pyterrier_shallow.Anchor` (as a dict).
    """
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "base_model": base,
        "data": data,
        "loss": loss,
        "num_negatives": config.num_negatives,
        "config": dataclasses.asdict(config),
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "saved_step": result.best_step,
        "validation": None if validation is None else {
            **validation,
            "best": result.best_score,
            "best_step": result.best_step,
        },
        "curve": result.curve,
        **({"gates": gates} if gates is not None else {}),
        **({"query_gates": query_gates} if query_gates is not None else {}),
        **({"score_parameters": score_parameters} if score_parameters else {}),
        **({"anchor": anchor} if anchor else {}),
        "device": device,
        "amp_bf16": amp,
        "elapsed_s": round(elapsed_s, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def render_readme(card: dict) -> str:
    """Renders a short Markdown summary of a training card."""
    config, loss = card["config"], card["loss"]
    loss_text = ", ".join(f"{key}={value}" for key, value in loss.items() if key != "name")
    lines = [
        "# Cross-encoder trained with pyterrier-shallow",
        "",
        "Load it with `pyterrier_shallow.CrossEncoder(\"<this directory>\")` or with "
        "`transformers.AutoModelForSequenceClassification` (one logit per (query, text) pair).",
        "",
        f"- base model: {_describe_base(card['base_model'])}",
        f"- data: {_describe_data(card['data'])}",
        f"- loss: {loss['name']}" + (f" ({loss_text})" if loss_text else ""),
        f"- k = {config['num_negatives']} negatives, {config['queries_per_step']} queries per step, "
        f"{card['steps']} of {config['steps']} steps" + (" (stopped early)" if card["stopped_early"] else ""),
        f"- lr {config['lr']} (head {config['head_lr'] or config['lr']}), warm-up {config['warmup_steps']} steps, "
        f"weight decay {config['weight_decay']}",
        f"- lengths: query {config['query_length']}, text {config['doc_length']} tokens; seed {config['seed']}",
        *([f"- trained under the sparse attention pattern, document window {config['window']}: load it with "
           f"`SparseCrossEncoder(path, window={config['window']})`"] if config.get("window") is not None else []),
        f"- device {card['device']}" + (" (bf16)" if card["amp_bf16"] else "") + f", {card['elapsed_s']} s",
        "",
        "Command:",
        "",
        f"    {card['command']}",
        "",
    ]
    validation = card["validation"]
    if validation is not None:
        metric = validation["metric"]
        first_stage = validation.get("first_stage")
        lines += [
            f"## Validation: {metric} on {validation['queries']} held-out queries ({validation['name']}), "
            f"reranking {validation.get('depth') or 'the'} first-stage candidates",
            "",
            f"First stage alone: {first_stage:.4f}." if first_stage is not None else "",
            f"Saved model: step {validation['best_step']}, {metric} {validation['best']:.4f}.",
            "",
            f"| step | train loss | {metric} |",
            "|---:|---:|---:|",
        ]
        for point in card["curve"]:
            loss_value = "" if point.get("loss") is None else f"{point['loss']:.4f}"
            lines.append(f"| {point['step']} | {loss_value} | {point[metric]:.4f} |")
        lines.append("")
    for key, title in (("gates", "Cross-attention gates of the saved model: |tanh(g)| over heads"),
                       ("query_gates", "Query-side gates (queries reading the document): |tanh(h)| over heads")):
        if card.get(key):
            lines += [f"## {title}", "", "| layer | mean | max |", "|---:|---:|---:|"]
            lines += [f"| {gate['layer']} | {gate['mean']:.3f} | {gate['max']:.3f} |" for gate in card[key]]
            lines.append("")
    if card.get("score_parameters"):
        learnt = ", ".join(f"`{name}` {value:.4g}" for name, value in card["score_parameters"].items())
        lines += [f"Learnt score parameters of the saved model: {learnt}.", ""]
    if card.get("anchor"):
        anchor = card["anchor"]
        lines += [
            "## Anchored scores",
            "",
            f"The final score mixes the first stage's score into the model's, per query: "
            f"`{anchor['first_stage']:.4g} * z(first stage) + {anchor['model']:.4g} * z(model)` ({anchor['source']}; "
            f"kept in `anchor.json`, which `CrossEncoder` reads; `anchor=False` scores with the model alone).",
            "",
        ]
    return "\n".join(lines)


def saved_gated_parameters(model_dir: str | os.PathLike) -> dict:
    """What a gated checkpoint learnt, read once from its weights (empty for other models).

    Returns:
        ``gates`` (and, in a symmetric model, ``query_gates``): per layer the mean and the largest ``|tanh(g)|``;
        ``score_parameters``: the learnt ``scale`` and, with the token-match term, ``match_weight``.
    """
    from safetensors import safe_open

    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as weights:
        names = set(weights.keys())
        if "gates" not in names:
            return {}
        found = {name: gate_summary(weights.get_tensor(name)) for name in ("gates", "query_gates") if name in names}
        scalars = {name: round(float(weights.get_tensor(name).float()), 4) for name in ("scale", "match_weight")
                   if name in names}
    return {**found, "score_parameters": scalars}


def _describe_base(base: dict) -> str:
    init = base.get("init") or base
    return f"`{init.get('checkpoint')}` ({init.get('num_layers', '?')} layers)"


def _describe_data(data: dict) -> str:
    if "sources" in data:
        parts = [f"{part['name']} ({part['queries']} queries, p={part['probability']:.2f})" for part in data["sources"]]
        return "; ".join(parts)
    return f"{data['name']} ({data['queries']} queries)"


def write_card(output_dir: str | os.PathLike, card: dict) -> None:
    """Writes ``training_card.json`` and ``README.md`` into ``output_dir`` atomically."""
    output_dir = Path(output_dir)
    atomic_write_bytes(output_dir / README_FILE, render_readme(card).encode("utf8"))
    atomic_write_json(output_dir / CARD_FILE, card)
