import copy

import numpy as np
import pytest
import torch

import pyterrier_shallow as pts
from pyterrier_shallow._quantize import quantize_for_cpu, quantized_linear_count


@pytest.fixture(scope="module")
def loaded(shallow_checkpoint):
    ce = pts.CrossEncoder(shallow_checkpoint, max_length=256, warn_truncation=False)
    return ce.network, ce.tokenizer


def test_float32_returns_the_model_unchanged(loaded):
    model, _ = loaded
    assert quantize_for_cpu(model, "float32") is model


def test_int8_quantises_every_encoder_linear_and_keeps_the_head(loaded):
    model, _ = loaded
    before = copy.deepcopy(model.state_dict())
    quantized = quantize_for_cpu(model, "int8")
    encoder_linears = sum(isinstance(m, torch.nn.Linear) for m in model.bert.modules())
    assert encoder_linears == 2 * 6 + 1  # per layer: q, k, v, attention output, intermediate, output; and the pooler
    assert quantized_linear_count(quantized) == encoder_linears
    assert type(quantized.classifier) is torch.nn.Linear and quantized.classifier.weight.dtype == torch.float32
    assert quantized_linear_count(model) == 0  # the float32 model is left as it was
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not quantized.training


def test_int8_weights_have_one_scale_per_output_channel(loaded):
    model, _ = loaded
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    quantized = quantize_for_cpu(model, "int8")
    layers = [module for module in quantized.modules() if isinstance(module, DynamicQuantizedLinear)]
    assert layers
    for layer in layers:
        weight = layer.weight()
        assert weight.qscheme() == torch.per_channel_affine
        assert weight.q_per_channel_scales().numel() == layer.out_features


def test_int8_hidden_states_agree_with_float32(loaded, nfcorpus_pairs):
    model, tokenizer = loaded
    quantized = quantize_for_cpu(model, "int8")
    inputs = tokenizer(
        nfcorpus_pairs["query"].tolist()[:16],
        nfcorpus_pairs["text"].tolist()[:16],
        padding=True,
        truncation="only_second",
        max_length=256,
        return_tensors="pt",
    )
    with torch.inference_mode():
        full = model.bert(**inputs).last_hidden_state[:, 0]
        small = quantized.bert(**inputs).last_hidden_state[:, 0]
    cosine = torch.nn.functional.cosine_similarity(full, small, dim=-1)
    assert cosine.min() > 0.99
    assert not torch.equal(full, small)  # int8 arithmetic did run


def test_a_cross_encoder_scores_with_an_int8_model(loaded, nfcorpus_pairs):
    model, tokenizer = loaded
    frame = nfcorpus_pairs.head(20)
    full = pts.CrossEncoder((model, tokenizer), max_length=256, warn_truncation=False)(frame)
    int8 = pts.CrossEncoder((quantize_for_cpu(model, "int8"), tokenizer), max_length=256, warn_truncation=False)(frame)
    assert int8["score"].dtype == np.float32 and len(int8) == 20
    assert np.abs(int8["score"].to_numpy() - full["score"].to_numpy()).max() < 0.1


@pytest.mark.parametrize("precision", ["float16", "int4", "fp32", ""])
def test_unknown_precision_is_refused(loaded, precision):
    with pytest.raises(ValueError, match="precision must be one of"):
        quantize_for_cpu(loaded[0], precision)


def test_only_float32_cpu_models_are_quantised(loaded):
    model, _ = loaded
    with pytest.raises(ValueError, match="CPU only"):
        quantize_for_cpu(copy.deepcopy(model).to("meta"), "int8")
    with pytest.raises(ValueError, match="float32"):
        quantize_for_cpu(copy.deepcopy(model).to(torch.bfloat16), "int8")
    with pytest.raises(ValueError, match="no Linear layers"):
        quantize_for_cpu(torch.nn.Sequential(torch.nn.LayerNorm(4)), "int8")
