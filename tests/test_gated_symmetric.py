"""Symmetric gated cross-encoders: query tokens read the document through closed-at-start gates of their own."""

import pickle

import numpy as np
import pytest
import torch
from _gated_helpers import gated_logits, listwise_backward

import pyterrier_shallow as pts
from pyterrier_shallow._tokenizers import prepare_tokenizer
from pyterrier_shallow.gated import GatedBertRanker, gated_from_bi_encoder, load_delta, save_delta
from pyterrier_shallow.train.card import saved_gated_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs(fixture_nfcorpus_pairs):
    frame = fixture_nfcorpus_pairs.head(12)
    return frame.assign(text=[" ".join(text.split()[:40]) for text in frame["text"]])  # no truncation


@pytest.fixture(scope="module")
def symmetric():
    model, tokenizer = gated_from_bi_encoder(num_layers=2, query_gates=True)
    prepare_tokenizer(tokenizer, max_length=512)
    return model, tokenizer


def _opened(model, *, gates=0.0, query_gates=0.0, symmetric=True, **config):
    """A copy of ``model`` in eval mode with its gates set and ``config`` settings changed (one-sided: no query gates,
    the query encoded once)."""
    config = {**model.config.to_dict(), **config, "query_gates": symmetric}
    copy = GatedBertRanker(model.config.__class__(**config))
    state = model.state_dict()
    if not copy.config.query_gates:
        state.pop("query_gates", None)
    copy.load_state_dict(state)
    with torch.no_grad():
        copy.gates.fill_(gates)
        if copy.config.query_gates:
            copy.query_gates.copy_(torch.linspace(-query_gates, query_gates, copy.query_gates.numel())
                                   .view_as(copy.query_gates))
    return copy.eval()


def _reference(model, tokenizer, query: str, text: str) -> float:
    """One pair's logit written out from the formula, with plain softmax attention and no padding."""
    config = model.config
    heads, width = config.num_attention_heads, config.hidden_size // config.num_attention_heads

    def embed(text):
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        return model.bert.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))

    def split(linear, states):
        return linear(states).view(1, -1, heads, width).transpose(1, 2)

    def attend(queries, keys, values):
        return torch.softmax(queries @ keys.transpose(-1, -2) / width**0.5, dim=-1) @ values

    def finish(layer, states, context):
        merged = context.transpose(1, 2).reshape(1, -1, config.hidden_size)
        attended = layer.attention.output(merged, states)
        return layer.output(layer.intermediate(attended), attended)

    query_states, doc_states = embed(query), embed(text)
    doc_gates, query_gates = torch.tanh(model.gates), torch.tanh(model.query_gates)
    for index, layer in enumerate(model.bert.encoder.layer):
        self_attention = layer.attention.self
        q = [split(linear, query_states) for linear in (self_attention.query, self_attention.key, self_attention.value)]
        d = [split(linear, doc_states) for linear in (self_attention.query, self_attention.key, self_attention.value)]
        query_context = attend(*q) + query_gates[index][None, :, None, None] * attend(q[0], d[1], d[2])
        doc_context = attend(*d) + doc_gates[index][None, :, None, None] * attend(d[0], q[1], q[2])
        query_states, doc_states = finish(layer, query_states, query_context), finish(layer, doc_states, doc_context)
    cosine = torch.cosine_similarity(query_states.mean(1), doc_states.mean(1))
    return float(model.scale * cosine)


def test_closed_query_gates_score_as_the_one_sided_model(symmetric, pairs):
    model, tokenizer = symmetric
    one_sided = _opened(model, gates=0.4, symmetric=False)
    expected = gated_logits(one_sided, tokenizer, pairs)
    np.testing.assert_allclose(gated_logits(_opened(model, gates=0.4), tokenizer, pairs), expected, atol=1e-5)
    # in training mode the query is encoded with each candidate; with its gates closed nothing changes
    per_pair = _opened(model, gates=0.4, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0).train()
    np.testing.assert_allclose(gated_logits(per_pair, tokenizer, pairs), expected, atol=1e-4)


def test_open_query_gates_equal_a_written_out_reference(symmetric, pairs):
    model, tokenizer = symmetric
    opened = _opened(model, gates=0.3, query_gates=0.8)
    scores = gated_logits(opened, tokenizer, pairs)
    with torch.no_grad():
        expected = [_reference(opened, tokenizer, row.query, row.text) for row in pairs.itertuples()]
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert np.abs(scores - gated_logits(_opened(model, gates=0.3), tokenizer, pairs)).max() > 1e-2


def test_query_gates_get_a_gradient_while_closed(symmetric, pairs):
    model, tokenizer = symmetric
    trainable = _opened(model)
    listwise_backward(trainable, tokenizer, pairs)
    assert trainable.query_gates.grad is not None and trainable.query_gates.grad.abs().max() > 0


def test_symmetric_delta_loads_pickles_and_runs_windowed(symmetric, pairs, tmp_path):
    from pyterrier_shallow.sparse import SparseCrossEncoder

    model, tokenizer = symmetric
    opened = _opened(model, gates=0.3, query_gates=0.8)
    folder = save_delta(opened, tokenizer, tmp_path / "delta")
    loaded, _ = load_delta(folder)
    assert loaded.config.query_gates
    torch.testing.assert_close(loaded.query_gates, opened.query_gates.half().float())
    options = dict(query_length=32, doc_length=200, warn_truncation=False)
    ranker = pts.CrossEncoder(folder, **options)
    scores = ranker(pairs)["score"].to_numpy()
    np.testing.assert_allclose(scores, gated_logits(loaded, tokenizer, pairs), atol=1e-4)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ranker))(pairs)["score"].to_numpy(), scores)
    whole = SparseCrossEncoder(folder, window=None, **options)(pairs)["score"].to_numpy()
    np.testing.assert_allclose(whole, scores, atol=1e-4)
    windowed = SparseCrossEncoder(folder, window=2, **options)(pairs)["score"].to_numpy()
    banded = _opened(loaded, gates=0.3, query_gates=0.8, doc_window=2)
    np.testing.assert_allclose(windowed, gated_logits(banded, tokenizer, pairs), atol=1e-3)
    assert np.abs(windowed - scores).max() > 1e-3


def test_card_reads_both_sides_gates(symmetric, tmp_path):
    model, tokenizer = symmetric
    opened = _opened(model, gates=0.2, query_gates=0.8)
    opened.save_pretrained(tmp_path / "run")
    saved = saved_gated_parameters(tmp_path / "run")
    assert [gate["max"] for gate in saved["gates"]] == pytest.approx([np.tanh(0.2)] * 2, abs=1e-4)
    assert max(gate["max"] for gate in saved["query_gates"]) == pytest.approx(np.tanh(0.8), abs=1e-4)
    assert opened.gate_summary("query_gates") == saved["query_gates"]
    with pytest.raises(ValueError, match="no 'query_gates'"):
        _opened(model, symmetric=False).gate_summary("query_gates")
