"""Int8 inference on CPU: dynamic quantisation of a model's Linear layers."""

from __future__ import annotations

import warnings

import torch

PRECISIONS = ("float32", "int8")
"""The precisions :func:`quantize_for_cpu` accepts."""

_HEAD_NAMES = ("classifier", "score", "head")


def quantize_for_cpu(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Returns ``model`` ready to run on CPU at ``precision``.

    ``"float32"`` returns the model unchanged. ``"int8"`` returns a quantised copy: the weights of every Linear
    layer of the encoder are stored as int8 (per output channel scales) and its activations are quantised on the fly,
    batch by batch (torch dynamic quantisation). Embeddings, layer norms and the classification head stay in float32,
    so scores keep their resolution. The speed-up depends on the CPU: large where it has int8 dot-product
    instructions (AVX-512 VNNI, AMX), small on AVX2-only machines.

    Args:
        model: A float32 model on the CPU, in eval mode.
        precision: ``"float32"`` or ``"int8"``.

    Raises:
        ValueError: On an unknown precision, a model off the CPU, or a model that is not float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return model
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantisation runs on the CPU only; the model is on {parameter.device}")
    if parameter is not None and parameter.dtype != torch.float32:
        raise ValueError(f"int8 quantisation starts from a float32 model; this one is {parameter.dtype}")
    layers = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.split(".")[0] not in _HEAD_NAMES
    }
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear layers to quantise")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig  # the default scales whole matrices: coarser
        quantized = torch.ao.quantization.quantize_dynamic(
            model, dict.fromkeys(layers, qconfig), dtype=torch.qint8, inplace=False
        )
    return quantized.eval()


def quantized_linear_count(model: torch.nn.Module) -> int:
    """Returns how many Linear layers of ``model`` run in int8."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return sum(isinstance(module, DynamicQuantizedLinear) for module in model.modules())
