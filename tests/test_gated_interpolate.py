"""Interpolating a gated cross-encoder toward its warm start: the ends are the bi-encoder and the trained model."""

import numpy as np
import pytest
import torch
from _gated_helpers import gated_logits

import pyterrier_shallow as pts
from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
from pyterrier_shallow._tokenizers import prepare_tokenizer
from pyterrier_shallow.gated import DEEP_MODEL_DIR, gated_from_bi_encoder, load_gated
from pyterrier_shallow.gated.interpolate import interpolate_from_warm_start, interpolate_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs(fixture_nfcorpus_pairs):
    return fixture_nfcorpus_pairs.head(12)


@pytest.fixture(scope="module")
def trained():
    model, tokenizer = load_gated(DEEP_MODEL_DIR)
    prepare_tokenizer(tokenizer, max_length=512)
    return model, tokenizer


def _ready(model, tokenizer):
    prepare_tokenizer(tokenizer, max_length=512)
    return model, tokenizer


def test_weight_zero_is_the_bi_encoder(pairs):
    model, tokenizer = _ready(*interpolate_from_warm_start(DEEP_MODEL_DIR, 0.0))
    assert torch.tanh(model.gates).abs().max().item() == 0.0
    scorer = pts.BiEncoder(query_length=34, doc_length=202, warn_truncation=False).text_scorer()
    expected = scorer(pairs)["score"].to_numpy()
    np.testing.assert_allclose(gated_logits(model, tokenizer, pairs) / model.scale.item(), expected, atol=1e-5)


def test_weight_one_is_the_trained_model(pairs, trained):
    model, tokenizer = _ready(*interpolate_from_warm_start(DEEP_MODEL_DIR, 1.0))
    np.testing.assert_allclose(gated_logits(model, tokenizer, pairs), gated_logits(*trained, pairs), atol=1e-4)


def test_every_weight_lies_between_the_ends(trained):
    start, _ = gated_from_bi_encoder()
    middle = interpolate_weights(start, trained[0], 0.25)
    begin, end = dict(start.named_parameters()), dict(trained[0].named_parameters())
    for name, tensor in middle.named_parameters():
        torch.testing.assert_close(tensor, begin[name] + 0.25 * (end[name] - begin[name]))
    assert torch.equal(start.gates, torch.zeros_like(start.gates)), "the start is left unchanged"


def test_scores_move_from_the_bi_encoder_to_the_trained_model(pairs, trained):
    ends = [gated_logits(*_ready(*interpolate_from_warm_start(DEEP_MODEL_DIR, weight)), pairs) for weight in (0, 1)]
    middle = gated_logits(*_ready(*interpolate_from_warm_start(DEEP_MODEL_DIR, 0.5)), pairs)
    assert not np.allclose(middle, ends[0], atol=1e-3) and not np.allclose(middle, ends[1], atol=1e-3)


def test_a_model_with_a_token_match_term_starts_with_the_term_off(pairs, tmp_path):
    from pyterrier_shallow.gated import save_delta

    trained, tokenizer = gated_from_bi_encoder(num_layers=2, match_texts=pairs["text"].tolist())
    with torch.no_grad():
        trained.match_weight.fill_(0.7)
        trained.gates.fill_(0.3)
    folder = save_delta(trained, tokenizer, tmp_path / "with-term")
    model, tokenizer = _ready(*interpolate_from_warm_start(folder, 0.0))
    assert model.config.match_term and model.match_weight.item() == 0.0
    torch.testing.assert_close(model.term_weights, trained.term_weights, rtol=1e-3, atol=0)  # stored in float16
    plain, plain_tokenizer = gated_from_bi_encoder(num_layers=2)
    prepare_tokenizer(plain_tokenizer, max_length=512)
    np.testing.assert_allclose(gated_logits(model, tokenizer, pairs), gated_logits(plain, plain_tokenizer, pairs),
                               atol=1e-4)


def test_a_model_that_began_elsewhere_needs_its_warm_start():
    with pytest.raises(ValueError, match="runs/bi-l3-e4"):
        interpolate_from_warm_start(DEFAULT_CROSS_ENCODER_DIR, 0.5)


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), "0.5", None, True])
def test_a_weight_that_is_not_a_finite_number_is_refused(weight, trained):
    start, _ = gated_from_bi_encoder()
    with pytest.raises(ValueError, match="finite number"):
        interpolate_weights(start, trained[0], weight)


def test_models_of_different_shapes_are_refused(trained):
    start, _ = gated_from_bi_encoder(num_layers=3)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        interpolate_weights(start, trained[0], 0.5)
    with pytest.raises(ValueError, match="GatedBertRanker"):
        interpolate_weights(torch.nn.Linear(2, 2), trained[0], 0.5)


def test_an_interpolated_model_ships_as_a_delta_that_cross_encoder_loads(pairs, tmp_path):
    from pyterrier_shallow.gated import save_delta

    model, tokenizer = _ready(*interpolate_from_warm_start(DEEP_MODEL_DIR, 0.5))
    folder = save_delta(model, tokenizer, tmp_path / "halfway")
    loaded = pts.CrossEncoder(folder, warn_truncation=False, anchor=False)(pairs)
    in_memory = pts.CrossEncoder((model, tokenizer), warn_truncation=False, anchor=False)(pairs)
    assert loaded["score"].dtype == "float32"
    both = loaded.merge(in_memory, on=["qid", "docno"], suffixes=("", "_in_memory"), validate="one_to_one")
    assert len(both) == len(pairs)
    np.testing.assert_allclose(both["score"], both["score_in_memory"], atol=2e-2)  # the delta is stored in float16


def test_a_pruned_model_needs_its_own_warm_start(tmp_path):
    from pyterrier_shallow.gated import save_delta

    pruned, tokenizer = gated_from_bi_encoder(num_layers=2)
    pruned.prune_feed_forward(1, torch.arange(384))
    folder = save_delta(pruned, tokenizer, tmp_path / "pruned")
    with pytest.raises(ValueError, match="pass the warm start it was trained from"):
        interpolate_from_warm_start(folder, 0.5)
