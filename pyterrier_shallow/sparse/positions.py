"""Extending the absolute position embeddings of a BERT-family model to longer inputs by linear interpolation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyterrier_shallow.sparse._backbone import backbone_of


def extend_position_embeddings(model: nn.Module, length: int) -> nn.Module:
    """Stretches the position table of ``model`` to ``length`` positions, in place, and returns ``model``.

    Row ``i`` of the new table is the old table linearly interpolated at ``i * (old - 1) / (length - 1)``, so the
    first and last rows are kept and every position in between is a blend of its two nearest old rows. Inputs of any
    length then see interpolated positions, so scores change even for short inputs: fine-tune the extended model on
    long inputs before relying on it. The config's ``max_position_embeddings`` is updated, so that the model saves
    and reloads with the new table.

    Args:
        model: A BERT or ELECTRA sequence classifier.
        length: The number of positions wanted; more than the model has.
    """
    embeddings = backbone_of(model).embeddings
    old = embeddings.position_embeddings.weight
    if length <= old.shape[0]:
        raise ValueError(f"the model already has {old.shape[0]} positions; extending needs more, got {length}")
    with torch.no_grad():
        table = F.interpolate(old.detach().float().T[None], size=length, mode="linear", align_corners=True)[0].T
    extended = nn.Embedding(length, old.shape[1], device=old.device, dtype=old.dtype)
    with torch.no_grad():
        extended.weight.copy_(table.to(old.dtype))
    extended.weight.requires_grad_(old.requires_grad)
    embeddings.position_embeddings = extended
    device = old.device
    for name, values in (
        ("position_ids", torch.arange(length, device=device)[None]),
        ("token_type_ids", torch.zeros(1, length, dtype=torch.long, device=device)),
    ):
        if hasattr(embeddings, name):
            embeddings.register_buffer(name, values, persistent=False)
    model.config.max_position_embeddings = length
    return model
