import pytest
import torch
import torch.nn.functional as F

from pyterrier_shallow.sparse._backbone import backbone_of, finish_layer, project
from pyterrier_shallow.sparse._banded_inference import banded_layer_, heads_of, padded_projection
from pyterrier_shallow.sparse._kernels import block_size_for, segment_attention, window_bias, windowed_attention

HEADS, HEAD_DIM = 4, 8


def _inputs(batch=3, length=64, globals_=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, HEADS, length, HEAD_DIM)
    query, keys, values = (torch.randn(shape, generator=generator) for _ in range(3))
    global_keys, global_values = (torch.randn(batch, HEADS, globals_, HEAD_DIM, generator=generator) for _ in range(2))
    doc_mask = torch.ones(batch, length, dtype=torch.bool)
    doc_mask[1, 40:] = False  # a shorter document
    doc_mask[2, 9:] = False  # one shorter than a block
    global_mask = torch.ones(batch, globals_, dtype=torch.bool)
    global_mask[0, 3:] = False  # a shorter query
    return query, keys, values, global_keys, global_values, global_mask, doc_mask


def _reference(query, keys, values, global_keys, global_values, global_mask, doc_mask, window):
    """Dense masked attention over [globals, document] keys: builds the full mask the kernels avoid."""
    length = keys.shape[2]
    position = torch.arange(length)
    band = (position[:, None] - position[None, :]).abs() <= window
    doc_part = band[None] & doc_mask[:, None, :]
    parts, all_keys, all_values = [doc_part], [keys], [values]
    if global_keys is not None:
        parts.insert(0, global_mask[:, None, :].expand(-1, length, -1))
        all_keys.insert(0, global_keys)
        all_values.insert(0, global_values)
    mask = torch.cat(parts, dim=-1)[:, None]
    return F.scaled_dot_product_attention(query, torch.cat(all_keys, 2), torch.cat(all_values, 2), attn_mask=mask)


def _close_on_real_rows(ours, reference, doc_mask):
    rows = doc_mask[:, None, :, None].expand_as(ours)
    torch.testing.assert_close(ours[rows], reference[rows], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [0, 1, 4, 16])
@pytest.mark.parametrize("with_globals", [True, False])
def test_windowed_attention_matches_dense_masked_attention(window, with_globals):
    query, keys, values, global_keys, global_values, global_mask, doc_mask = _inputs()
    if not with_globals:
        global_keys = global_values = global_mask = None
    block = block_size_for(window, 16)
    bias = window_bias(global_mask, doc_mask, window=window, block=block, dtype=torch.float32)
    ours = windowed_attention(query, keys, values, global_keys, global_values, bias, window=window, block=block)
    reference = _reference(query, keys, values, global_keys, global_values, global_mask, doc_mask, window)
    _close_on_real_rows(ours, reference, doc_mask)


def test_block_size_does_not_change_the_result():
    query, keys, values, global_keys, global_values, global_mask, doc_mask = _inputs()
    outputs = []
    for block in (4, 8, 32, 64):
        bias = window_bias(global_mask, doc_mask, window=4, block=block, dtype=torch.float32)
        outputs.append(windowed_attention(query, keys, values, global_keys, global_values, bias, window=4, block=block))
    for other in outputs[1:]:
        _close_on_real_rows(other, outputs[0], doc_mask)


def test_rows_without_any_key_stay_finite():
    query, keys, values, _, _, _, doc_mask = _inputs()
    doc_mask[1] = False
    bias = window_bias(None, doc_mask, window=2, block=16, dtype=torch.float32)
    assert torch.isfinite(windowed_attention(query, keys, values, None, None, bias, window=2, block=16)).all()


def test_segment_attention_matches_one_masked_call():
    query, keys, values, global_keys, global_values, global_mask, doc_mask = _inputs()
    cls_query = query[:, :, :1]
    ours = segment_attention(cls_query, [(global_keys, global_values, global_mask), (keys, values, doc_mask)])
    mask = torch.cat([global_mask, doc_mask], dim=1)[:, None, None, :]
    reference = F.scaled_dot_product_attention(
        cls_query, torch.cat([global_keys, keys], 2), torch.cat([global_values, values], 2), attn_mask=mask
    )
    torch.testing.assert_close(ours, reference)


def test_kernel_arguments_are_checked():
    query, keys, values, *_, doc_mask = _inputs()
    with pytest.raises(ValueError, match="multiple of the block"):
        window_bias(None, doc_mask[:, :60], window=2, block=16, dtype=torch.float32)
    bias = window_bias(None, doc_mask, window=2, block=16, dtype=torch.float32)
    with pytest.raises(ValueError, match="exceeds the block"):
        windowed_attention(query, keys, values, None, None, bias, window=20, block=16)


@pytest.fixture(scope="module")
def minilm_layer():
    from transformers import AutoModelForSequenceClassification

    from pyterrier_shallow._hf import minilm_path

    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1, num_hidden_layers=1)
    return backbone_of(model.eval()).layers[0]


@pytest.mark.parametrize(("window", "chunk"), [(1, 16), (4, 40), (4, 4096), (16, 32)])
def test_in_place_layer_matches_the_plain_layer(minilm_layer, window, chunk):
    """The chunked in-place inference layer equals attention then output projection and feed-forward."""
    heads, block = 12, block_size_for(window, 16)
    generator = torch.Generator().manual_seed(1)
    states = torch.randn(3, 64, 384, generator=generator)
    global_states = torch.randn(3, 6, 384, generator=generator)
    global_mask = torch.ones(3, 6, dtype=torch.bool)
    global_mask[2, 4:] = False
    doc_mask = torch.ones(3, 64, dtype=torch.bool)
    doc_mask[0, 50:] = False
    attention = minilm_layer.attention.self
    global_keys, global_values = (project(linear, global_states, heads) for linear in (attention.key, attention.value))
    bias = window_bias(global_mask, doc_mask, window=window, block=block, dtype=torch.float32)
    with torch.inference_mode():
        keys, values = (project(linear, states, heads) for linear in (attention.key, attention.value))
        context = windowed_attention(
            project(attention.query, states, heads),
            keys,
            values,
            global_keys,
            global_values,
            bias,
            window=window,
            block=block,
        )
        expected = finish_layer(minilm_layer, states, context, chunk=None)
        buffers = [padded_projection(linear, states, window) for linear in (attention.key, attention.value)]
        torch.testing.assert_close(heads_of(buffers[0], 3, heads, window), keys)
        ours = states.clone()
        banded_layer_(
            minilm_layer,
            ours,
            *buffers,
            global_keys,
            global_values,
            bias,
            heads=heads,
            window=window,
            block=block,
            chunk=chunk,
        )
    rows = doc_mask[:, :, None].expand_as(ours)
    torch.testing.assert_close(ours[rows], expected[rows], atol=1e-5, rtol=1e-5)
