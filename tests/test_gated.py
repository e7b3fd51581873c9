"""The gated cross-encoder: closed gates score as the bi-encoder, open gates read the query; loading and shipping."""

import pickle

import numpy as np
import pytest
import torch
from _gated_helpers import gated_logits, listwise_backward

import pyterrier_shallow as pts
from pyterrier_shallow._tokenizers import prepare_tokenizer
from pyterrier_shallow.gated import (
    GatedBertRanker,
    gated_from_bi_encoder,
    init_gated_cross_encoder,
    load_delta,
    save_delta,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def pairs(fixture_nfcorpus_pairs):
    return fixture_nfcorpus_pairs


@pytest.fixture(scope="module")
def closed():
    model, tokenizer = gated_from_bi_encoder(num_layers=2)
    prepare_tokenizer(tokenizer, max_length=512)
    return model, tokenizer


def _copy(model, *, gates=None, **config):
    """A copy of ``model`` in eval mode, with ``config`` settings changed and its gates set to ``gates``."""
    copy = GatedBertRanker(model.config.__class__(**{**model.config.to_dict(), **config}))
    copy.load_state_dict(model.state_dict())
    if gates is not None:
        with torch.no_grad():
            copy.gates.fill_(gates)
    return copy.eval()


def _cosines(folder, frame, layers):
    bi_encoder = pts.BiEncoder(folder, query_length=34, doc_length=202, warn_truncation=False)
    queries = bi_encoder.encode_queries(frame["query"].tolist())
    docs = bi_encoder.encode_docs(frame["text"].tolist())
    return (queries * docs).sum(1)


def test_closed_gates_score_as_the_bi_encoder(closed, pairs, tmp_path):
    from pyterrier_shallow.dense import save_first_layers

    model, tokenizer = closed
    cosines = _cosines(save_first_layers(tmp_path / "l2", 2), pairs, 2)
    np.testing.assert_allclose(gated_logits(model, tokenizer, pairs), 20.0 * cosines, atol=1e-5 * 20)


def test_six_layer_closed_gates_equal_the_shipped_bi_encoder(pairs):
    model, tokenizer = gated_from_bi_encoder()
    prepare_tokenizer(tokenizer, max_length=512)
    scorer = pts.BiEncoder(query_length=34, doc_length=202, warn_truncation=False).text_scorer()
    expected = scorer(pairs)["score"].to_numpy()
    np.testing.assert_allclose(gated_logits(model, tokenizer, pairs) / 20.0, expected, atol=1e-5)


def test_open_gates_let_documents_read_the_query(closed, pairs):
    model, tokenizer = closed
    opened = _copy(model, gates=0.5)
    before, after = gated_logits(model, tokenizer, pairs), gated_logits(opened, tokenizer, pairs)
    assert np.abs(after - before).max() > 1e-2
    # each pair depends on its own query only, whatever else shares the batch
    alone = np.concatenate([gated_logits(opened, tokenizer, pairs.iloc[[i]]) for i in range(0, len(pairs), 4)])
    np.testing.assert_allclose(alone, after[::4], atol=1e-4)


def test_gates_get_a_gradient_while_closed(closed, pairs):
    model, tokenizer = closed
    trainable = _copy(model)
    listwise_backward(trainable, tokenizer, pairs)
    assert trainable.gates.grad is not None and trainable.gates.grad.abs().max() > 0
    assert trainable.scale.grad is not None


def test_confined_models_read_the_query_in_their_top_layers_only(closed, pairs):
    model, tokenizer = closed
    confined = _copy(model, gates=0.5, cross_layers=1)
    assert confined.first_query_layer() == 1 and torch.equal(confined.open_gates()[0], torch.zeros(12))
    trainable = _copy(model, cross_layers=1)
    listwise_backward(trainable, tokenizer, pairs)
    assert trainable.gates.grad[0].abs().max() == 0 and trainable.gates.grad[1].abs().max() > 0
    np.testing.assert_allclose(gated_logits(_copy(model, cross_layers=1), tokenizer, pairs),
                               gated_logits(model, tokenizer, pairs), atol=1e-5)  # closed gates: the bi-encoder
    opened = _copy(model, gates=0.5)
    opened.confine_cross_attention(1)
    assert opened.config.cross_layers == 1 and opened.gates[0].abs().max() == 0
    with pytest.raises(ValueError, match="cross_layers"):
        opened.confine_cross_attention(3)
    with pytest.raises(ValueError, match="cross_layers"):
        _copy(model, cross_layers=0)


def test_a_pruned_feed_forward_block_round_trips_as_a_delta(closed, pairs, tmp_path):
    model, tokenizer = closed
    pruned = _copy(model, gates=0.3)
    pruned.prune_feed_forward(1, torch.arange(0, 1536, 4))
    assert pruned.config.feed_forward_sizes == [1536, 384]
    assert pruned.bert.encoder.layer[1].intermediate.dense.out_features == 384
    save_delta(pruned, tokenizer, tmp_path / "pruned")
    loaded, _ = load_delta(tmp_path / "pruned")
    np.testing.assert_allclose(gated_logits(loaded, tokenizer, pairs), gated_logits(pruned, tokenizer, pairs),
                               atol=0.05)  # the delta holds fp16 weights
    with pytest.raises(ValueError, match="keep must index"):
        pruned.prune_feed_forward(1, torch.tensor([384]))
    with pytest.raises(ValueError, match="feed_forward_sizes"):
        _copy(model, feed_forward_sizes=[1536])


def test_doc_window_restricts_document_attention(closed, pairs):
    model, tokenizer = closed
    dense = gated_logits(model, tokenizer, pairs)
    banded = gated_logits(_copy(model, doc_window=2), tokenizer, pairs)
    assert np.abs(dense - banded).max() > 1e-3
    short = pairs.assign(text="vitamin d")  # [CLS] + 3 tokens + [SEP]: a window of 4 sees everything
    wide = gated_logits(_copy(model, doc_window=4), tokenizer, short)
    np.testing.assert_allclose(wide, gated_logits(model, tokenizer, short), atol=1e-5)


def test_cross_encoder_loads_a_full_checkpoint(tmp_path, pairs, closed):
    folder = init_gated_cross_encoder(None, tmp_path / "gated", num_layers=2)
    ranker = pts.CrossEncoder(folder, query_length=32, doc_length=200, warn_truncation=False)
    scored = ranker(pairs)
    assert isinstance(ranker.network, GatedBertRanker)
    assert scored["score"].dtype == np.float32
    np.testing.assert_allclose(scored["score"].to_numpy(), gated_logits(*closed, pairs), atol=1e-4)


def test_delta_round_trip_pickles_and_runs_int8(tmp_path, pairs, closed):
    model, tokenizer = closed
    trained = _copy(model, gates=0.3)
    with torch.no_grad():
        trained.bert.encoder.layer[0].output.dense.bias.add_(0.01)
    folder = save_delta(trained, tokenizer, tmp_path / "delta")
    weights = (folder / "delta.safetensors").stat().st_size
    assert weights < 0.5 * 4 * sum(p.numel() for p in trained.parameters())  # fp16, token embeddings left out
    loaded, _ = load_delta(folder)
    expected = gated_logits(trained, tokenizer, pairs)
    np.testing.assert_allclose(gated_logits(loaded, tokenizer, pairs), expected, atol=0.02)

    ranker = pts.CrossEncoder(folder, query_length=32, doc_length=200, warn_truncation=False)
    first = ranker(pairs)["score"].to_numpy()
    again = pickle.loads(pickle.dumps(ranker))(pairs)["score"].to_numpy()
    np.testing.assert_array_equal(first, again)
    int8 = pts.CrossEncoder(folder, query_length=32, doc_length=200, precision="int8", warn_truncation=False)
    quantised = int8(pairs)["score"].to_numpy()
    assert np.corrcoef(first, quantised)[0, 1] > 0.95


def test_delta_refuses_changed_token_embeddings(tmp_path, closed):
    model, tokenizer = closed
    changed = _copy(model)
    with torch.no_grad():
        changed.bert.embeddings.word_embeddings.weight[5] += 1.0
    with pytest.raises(ValueError, match="differs"):
        save_delta(changed, tokenizer, tmp_path / "delta")
    assert not (tmp_path / "delta").exists()


def test_gated_from_bi_encoder_checks_layers():
    with pytest.raises(ValueError, match="num_layers"):
        gated_from_bi_encoder(num_layers=7)


def test_sparse_cross_encoder_runs_a_gated_model_with_a_window(tmp_path, pairs, closed):
    from pyterrier_shallow.sparse import SparseCrossEncoder

    model, tokenizer = closed
    opened = _copy(model, gates=0.4)
    opened.save_pretrained(tmp_path / "opened")
    tokenizer.save_pretrained(tmp_path / "opened")
    options = dict(query_length=32, doc_length=200, warn_truncation=False)
    dense = pts.CrossEncoder(tmp_path / "opened", **options)(pairs)["score"].to_numpy()
    whole = SparseCrossEncoder(tmp_path / "opened", window=None, **options)(pairs)["score"].to_numpy()
    np.testing.assert_allclose(whole, dense, atol=1e-4)
    windowed = SparseCrossEncoder(tmp_path / "opened", window=2, **options)(pairs)["score"].to_numpy()
    np.testing.assert_allclose(windowed, gated_logits(_copy(opened, doc_window=2), tokenizer, pairs), atol=1e-4)
    assert np.abs(windowed - dense).max() > 1e-3
